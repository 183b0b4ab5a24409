"""How a DVSA call travels: one HTTP exchange, answered with its status, Retry-After and body, or a failure.

The client (:mod:`recalls.shared.dvsa.client`) decides nothing here; it hands a :class:`Transport` the method,
URL, query, JSON body and headers. :class:`PooledTransport` is the fleet's: httpcore's connection pool, the
engine under httpx, called directly. httpx's client merges URLs, cookies, auth and redirects on every request,
none of which a DVSA call uses, and that layer cost a sixth of a worker's CPU. Tests may pass any object with
the same ``request``.

The proxy for DVSA's address comes from the environment once, when the pool opens (``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY``, as httpx and curl read them).

Each call is sent once: the transport never tries again by itself, since every send is a request at
DVSA (it counts against the limit, which granted one, and it may be applied).  A failure with no HTTP
answer is a :class:`TransportFailure` naming its kind and whether DVSA may have received the request:
only a connection that was never made is surely unsent.  An answer is read to at most
:data:`MAX_BODY_BYTES`; a longer one is cut there and says so.
"""

from __future__ import annotations

import contextlib
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import msgspec

MAX_BODY_BYTES = 1 << 20  # DVSA answers a VIN's recalls in a few KB; anything past this is not read
KEEPALIVE_S = 5.0  # as httpx's default
_UNSENT = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout, httpcore.ProxyError)
_FAILURES = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)
_AGENT = (b"User-Agent", b"recalls-fleet")
_JSON = (b"Content-Type", b"application/json")


@dataclass(frozen=True)
class RawReply:
    status: int
    retry_after: str | None  # the header as sent
    body: bytes
    cut: bool = False  # the answer went on past MAX_BODY_BYTES: ``body`` is its start


class TransportFailure(Exception):
    """No HTTP answer.  ``kind`` names the failure (``ReadTimeout``); ``maybe_sent``: DVSA may have it."""

    def __init__(self, kind: str, *, maybe_sent: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.maybe_sent = maybe_sent


class Transport(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> RawReply:
        """One exchange; raises :class:`TransportFailure` when there is no answer."""


class PooledTransport:
    """Calls over one httpcore pool; each phase (connect, write, read, wait for a slot) has ``timeout``."""

    def __init__(self, pool: httpcore.AsyncConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> RawReply:
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        fields = [(name.encode(), value.encode()) for name, value in headers.items()]
        fields.append(_AGENT)
        content = None
        if json is not None:
            content = msgspec.json.encode(json)
            fields.append(_JSON)
        try:
            async with self._pool.stream(
                method, url, headers=fields, content=content, extensions=self._extensions
            ) as response:
                body, cut = await _bounded(response.aiter_stream())
                return RawReply(response.status, _retry_after(response.headers), body, cut)
        except _FAILURES as exc:
            raise TransportFailure(type(exc).__name__, maybe_sent=not isinstance(exc, _UNSENT)) from None


@contextlib.asynccontextmanager
async def pooled_transport(
    base_url: str,
    request_timeout: float,
    *,
    connections: int = 64,
) -> AsyncIterator[PooledTransport]:
    """A :class:`PooledTransport` to ``base_url``, through the environment's proxy for it if any.

    A connection idle for ``KEEPALIVE_S`` closes, so a burst's extra connections do not stay open.
    """
    proxy = _proxy_for(base_url)
    pool = (
        httpcore.AsyncHTTPProxy(
            proxy_url=proxy.url,
            proxy_auth=proxy.auth,
            max_connections=connections,
            keepalive_expiry=KEEPALIVE_S,
        )
        if proxy
        else httpcore.AsyncConnectionPool(max_connections=connections, keepalive_expiry=KEEPALIVE_S)
    )
    async with pool:
        yield PooledTransport(pool, request_timeout)


@dataclass(frozen=True)
class _Proxy:
    url: str
    auth: tuple[str, str] | None


def _proxy_for(url: str) -> _Proxy | None:
    """The environment's proxy for ``url`` (its scheme's, else ``ALL_PROXY``), credentials apart."""
    host = urllib.parse.urlsplit(url).hostname or ""
    proxies = urllib.request.getproxies()
    found = proxies.get(urllib.parse.urlsplit(url).scheme) or proxies.get("all")
    if not found or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(found if "://" in found else f"http://{found}")
    if parts.username is None:
        return _Proxy(parts.geturl(), None)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    credentials = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    return _Proxy(bare, credentials)


def _retry_after(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            return value.decode("latin-1")
    return None


async def _bounded(chunks_in: AsyncIterator[bytes]) -> tuple[bytes, bool]:
    """The body, or its first ``MAX_BODY_BYTES`` bytes and True when it is longer (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in chunks_in:
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks)[:MAX_BODY_BYTES], True
    return b"".join(chunks), False
