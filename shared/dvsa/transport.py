"""How a DVSA call travels: one HTTP exchange, answered with its status, Retry-After and body, or a failure.

The client (:mod:`shared.dvsa.client`) decides nothing here; it hands a :class:`Transport` the method, URL,
query, JSON body and headers.  :class:`HttpxTransport` is the fleet's.  Tests may pass any object with
the same ``request``.

Each call is sent once: the transport never tries again by itself, since every send is a request at
DVSA (it counts against the limit, which granted one, and it may be applied).  A failure with no HTTP
answer is a :class:`TransportFailure` naming its kind and whether DVSA may have received the request:
only a connection that was never made is surely unsent.  An answer is read to at most
:data:`MAX_BODY_BYTES`; a longer one is cut there and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

MAX_BODY_BYTES = 1 << 20  # DVSA answers a VIN's recalls in a few KB; anything past this is not read
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


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


class HttpxTransport:
    """Calls over one pooled httpx client (its timeouts and proxy settings apply)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> RawReply:
        try:
            async with self._client.stream(
                method, url, params=params, json=json, headers=headers
            ) as response:
                body, cut = await _bounded(response)
                return RawReply(response.status_code, response.headers.get("Retry-After"), body, cut)
        except httpx.TransportError as exc:
            raise TransportFailure(type(exc).__name__, maybe_sent=not isinstance(exc, _UNSENT)) from None


async def _bounded(response: httpx.Response) -> tuple[bytes, bool]:
    """The body, or its first ``MAX_BODY_BYTES`` bytes and True when it is longer (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks)[:MAX_BODY_BYTES], True
    return b"".join(chunks), False
