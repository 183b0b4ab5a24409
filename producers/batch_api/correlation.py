"""Correlation ids for the API: each request runs under one, so its log lines can be found together.

A request's own ``x-correlation-id`` is kept when it is sane (printable ASCII, at most 128 characters);
otherwise the request gets a fresh one.  Either way the response echoes it in ``x-correlation-id``.
A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, so the scope also covers
streamed bodies and background work started by the request, and nothing is buffered.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recalls.shared import logs

HEADER = "x-correlation-id"
_HEADER_BYTES = HEADER.encode("ascii")
_SANE = re.compile(r"[\x20-\x7e]{1,128}")


def correlation_id(raw: bytes | None) -> str:
    """The request's id if it is sane, else a new one."""
    if raw is not None:
        # latin-1 maps every byte to one character, so a byte above 0x7e fails the pattern below.
        value = raw.decode("latin-1").strip()
        if _SANE.fullmatch(value):
            return value
    return uuid.uuid4().hex


class CorrelationMiddleware:
    """Runs each HTTP request inside ``logs.correlated(id)`` and echoes the id in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        others = [(k, v) for k, v in scope["headers"] if k != _HEADER_BYTES]
        sent = next((v for k, v in scope["headers"] if k == _HEADER_BYTES), None)
        value = correlation_id(sent)
        # The app, and this middleware should it be added twice, see the id that was chosen.
        scope = {**scope, "headers": [*others, (_HEADER_BYTES, value.encode("ascii"))]}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER_BYTES]
                message = {**message, "headers": [*headers, (_HEADER_BYTES, value.encode("ascii"))]}
            await send(message)

        with logs.correlated(value):
            await self._app(scope, receive, send_with_id)
