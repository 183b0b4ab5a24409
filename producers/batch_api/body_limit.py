"""The API's limit on request bodies: one larger than ``RECALLS_API_MAX_BODY`` is refused with 413.

FastAPI reads and parses a body whole, whatever its size, before it checks the key, so the limit is
kept outside it, in a pure ASGI middleware: a declared Content-Length above the limit is refused at
once, unread; otherwise the bytes are counted as they arrive and the request is refused as soon as
they pass the limit, so a chunked upload, which declares no length, is stopped too.  A body within the
limit is held until it is whole (at most the limit) and then handed on.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recalls.producers.batch_api.errors import ApiError, response_for


class BodyLimit:
    """Refuses every HTTP request whose body is larger than ``most`` bytes, before the app sees it."""

    def __init__(self, app: ASGIApp, *, most: int) -> None:
        self._app = app
        self._most = most

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if _declared_length(scope) > self._most:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client has gone: there is nobody to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._most:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self._app(scope, _replaying(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"body: larger than {self._most} bytes, the most this API accepts"
        await response_for(ApiError(413, "BULK_RECALL_BATCH_TOO_LARGE", message))(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    """The request's Content-Length; 0 when it declares none, or none that reads (then counting stops it)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands over the whole ``body``, then whatever the client sends next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
