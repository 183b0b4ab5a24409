"""Who is calling: an API key in the ``x-api-key`` header, or the session of a dashboard sign-in.

The header is the documented way.  The ``key`` query parameter (CarsXE's way) is still heard where
``key_in_url`` allows it (the batch API, for now), and refused with 400 elsewhere (the dashboard): a
URL stays in browser history, proxies' logs and Referer headers.  Every answer to a URL with a key
says it is deprecated (:class:`KeyInUrlDeprecation`).  A session cookie (see
``dashboard.sign_in``) is heard on reads only (GET, HEAD): anything that changes state needs the key
itself, so a page of another site can make no signed-in browser submit a batch.

Keys and sessions are checked against the store's hashes on every request (a hash and one indexed
read), and the key must hold the scope the route needs: ``batch`` for the batch API, ``ops`` for what
shows the whole fleet; a key without it meets 403.  Neither an error message nor a log line ever
holds the key or the session token presented.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations (see .routes).
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery
from starlette.datastructures import MutableHeaders, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recalls.producers.batch_api.errors import ApiError
from recalls.shared.store.api_keys import ApiKey, ApiKeys
from recalls.shared.store.sessions import Sessions

SESSION_COOKIE = "recalls_session"
SIGN_IN = "/dashboard/sign-in"
_READS = frozenset({"GET", "HEAD"})
KEY_IN_URL_DEPRECATED = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
_DEPRECATION = (
    ("Deprecation", f"@{int(KEY_IN_URL_DEPRECATED.timestamp())}"),  # an RFC 9651 date
    ("Link", '</openapi.json>; rel="deprecation"; type="application/json"'),  # its securitySchemes say so
)

_IN_QUERY = APIKeyQuery(
    name="key",
    scheme_name="key",
    auto_error=False,
    description="Deprecated (answers carry a Deprecation header): the API key as a query parameter.",
)
_IN_HEADER = APIKeyHeader(
    name="x-api-key", scheme_name="x-api-key", auto_error=False, description="The API key as a header."
)

Caller = Callable[..., Awaitable[ApiKey]]
Identify = Callable[..., Awaitable[ApiKey | None]]


def identifier(keys: ApiKeys, sessions: Sessions, *, key_in_url: bool) -> Identify:
    """A FastAPI dependency: the calling key, ``None`` if none is presented; 400 or 401 for a bad one."""

    async def identify(
        request: Request,
        in_query: Annotated[str | None, Security(_IN_QUERY)],
        in_header: Annotated[str | None, Security(_IN_HEADER)],
    ) -> ApiKey | None:
        if not key_in_url:
            refuse_key_in_url(request)
        presented = in_header or in_query
        if presented:
            key = await keys.verify(presented)
            if key is None:
                raise ApiError(401, "USER_NOT_FOUND", "key: unknown or revoked API key")
            return key
        # Read here rather than declared: the session is the dashboard's, not part of the API's description.
        in_session = request.cookies.get(SESSION_COOKIE)
        if in_session and request.method in _READS:
            key = await sessions.key(in_session)
            if key is None:
                message = f"session: ended, expired, or its key revoked; sign in again at {SIGN_IN}"
                raise ApiError(401, "SESSION_ENDED", message)
            return key
        return None

    return identify


def authenticator(keys: ApiKeys, sessions: Sessions, scope: str, *, key_in_url: bool = True) -> Caller:
    """A FastAPI dependency that answers the calling key if it has ``scope``, or refuses with 401 or 403."""
    identify = identifier(keys, sessions, key_in_url=key_in_url)

    async def caller(key: Annotated[ApiKey | None, Depends(identify)]) -> ApiKey:
        if key is None:
            raise ApiError(401, "MISSING_API_KEY", "key: required, as the x-api-key header")
        return scoped(key, scope)

    return caller


def scoped(key: ApiKey, scope: str) -> ApiKey:
    """``key`` if it has ``scope``; else 403."""
    if scope not in key.scopes:
        message = f"key: lacks the {scope} scope (recalls api keys create NAME --scope {scope})"
        raise ApiError(403, "INSUFFICIENT_SCOPE", message)
    return key


def refuse_key_in_url(request: Request) -> None:
    """400 if the request's URL holds a ``key`` parameter, whatever its value: it is never taken here."""
    if "key" in request.query_params:
        message = (
            "key: never accepted in this URL (browsers keep URLs in history and logs); "
            f"sign in at {SIGN_IN}, or send the x-api-key header"
        )
        raise ApiError(400, "API_KEY_IN_URL", message)


class KeyInUrlDeprecation:
    """Marks every answer to a URL with a ``key`` parameter deprecated (RFC 9745), linking to the docs.

    Pure ASGI, so that it marks every answer alike: errors, redirects and streamed CSV included.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "key" not in QueryParams(scope["query_string"]):
            await self._app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _DEPRECATION:
                    headers.append(name, value)
            await send(message)

        await self._app(scope, receive, sending)
