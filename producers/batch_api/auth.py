"""Who is calling: the API key, from the ``key`` query parameter (CarsXE's way) or the ``x-api-key`` header.

Keys are checked against the store's hashes on every request (a hash and one indexed read), and must
hold the scope the route needs: ``batch`` for the batch API, ``ops`` for what shows the whole fleet;
a key without it meets 403.  Neither an error message nor a log line ever holds the key presented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, APIKeyQuery

from producers.batch_api.errors import ApiError
from shared.store.api_keys import ApiKey, ApiKeys

_IN_QUERY = APIKeyQuery(
    name="key", scheme_name="key", auto_error=False, description="The API key as a query parameter."
)
_IN_HEADER = APIKeyHeader(
    name="x-api-key", scheme_name="x-api-key", auto_error=False, description="The API key as a header."
)

Caller = Callable[..., Awaitable[ApiKey]]


def authenticator(keys: ApiKeys, scope: str) -> Caller:
    """A FastAPI dependency that answers the calling key if it has ``scope``, or refuses with 401 or 403."""

    async def caller(
        in_query: Annotated[str | None, Security(_IN_QUERY)],
        in_header: Annotated[str | None, Security(_IN_HEADER)],
    ) -> ApiKey:
        presented = in_query or in_header
        if not presented:
            raise ApiError(
                401, "MISSING_API_KEY", "key: required, as the key query parameter or x-api-key header"
            )
        key = await keys.verify(presented)
        if key is None:
            raise ApiError(401, "USER_NOT_FOUND", "key: unknown or revoked API key")
        if scope not in key.scopes:
            message = f"key: lacks the {scope} scope (recalls api keys create NAME --scope {scope})"
            raise ApiError(403, "INSUFFICIENT_SCOPE", message)
        return key

    return caller
