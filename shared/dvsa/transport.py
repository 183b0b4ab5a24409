"""How a DVSA call travels: one HTTP exchange, answered with its status, Retry-After and body, or a failure.

The client (:mod:`shared.dvsa.client`) decides nothing here; it hands a :class:`Transport` the method, URL,
query, JSON body and headers.  :class:`AiohttpTransport` is the fleet's: aiohttp's client parses HTTP in C
and costs a worker about a quarter of the CPU per call that httpx's layers do (``bench/fleet_throughput.py``
measures the worker's CPU per DVSA call).  Tests may pass any object with the same ``request``.

A failure with no HTTP answer is a :class:`TransportFailure` naming its kind and whether DVSA may have
received the request: only a connection that was never made is surely unsent.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import msgspec

MAX_BODY_BYTES = 1 << 20  # DVSA answers a VIN's recalls in a few KB; anything past this is not read


async def _bounded(response: aiohttp.ClientResponse) -> bytes:
    """The body, or its first ``MAX_BODY_BYTES + 1`` bytes when it is longer (the rest is not read)."""
    if response.content_length is not None and response.content_length <= MAX_BODY_BYTES:
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    return b"".join(chunks)[: MAX_BODY_BYTES + 1]


def env_proxy(url: str) -> str | None:
    """The proxy that ``HTTPS_PROXY``/``HTTP_PROXY`` (and ``NO_PROXY``) name for ``url``, if any."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@dataclass(frozen=True)
class RawReply:
    status: int
    retry_after: str | None  # the header as sent
    body: bytes


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


class AiohttpTransport:
    """Calls over one pooled aiohttp session, each bounded by ``timeout`` seconds in all.

    ``proxy``: the proxy every call goes through (:func:`env_proxy` reads the usual variables once; the
    session's ``trust_env`` would read them, and ``.netrc``, on every call).
    """

    def __init__(self, session: aiohttp.ClientSession, *, timeout: float, proxy: str | None = None) -> None:
        # aiohttp sends a GET, PUT or DELETE again when a kept-alive connection drops under it.  Each
        # send is a request at DVSA: it counts against the limit, which granted one, and it may be
        # applied.  Whether to try again is the worker's decision.  (aiohttp's own test client turns
        # the retry off the same way; tests/integration/test_dvsa_transport.py pins it.)
        session._retry_connection = False
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._proxy = proxy

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> RawReply:
        data = None
        if json is not None:
            data = msgspec.json.encode(json)
            headers = {**headers, "Content-Type": "application/json"}
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                proxy=self._proxy,
            ) as response:
                body = await _bounded(response)
                return RawReply(response.status, response.headers.get("Retry-After"), body)
        except aiohttp.ClientConnectorError:
            raise TransportFailure("ConnectError", maybe_sent=False) from None
        except aiohttp.ConnectionTimeoutError:
            raise TransportFailure("ConnectTimeout", maybe_sent=False) from None
        except TimeoutError:
            raise TransportFailure("ReadTimeout", maybe_sent=True) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError):
            raise TransportFailure("RemoteProtocolError", maybe_sent=True) from None
        except aiohttp.ClientOSError:
            raise TransportFailure("ReadError", maybe_sent=True) from None
        except aiohttp.ClientError as exc:
            raise TransportFailure(type(exc).__name__, maybe_sent=True) from None
