"""The shapes of the sandbox's answers: DVSA's error body, the gateway's ``{message}`` body, Azure AD's.

Kept in one place so every handler answers an error the same way DVSA (or Azure AD) would.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

# DVSA's errorCode for each status it documents.
ERROR_CODES: dict[int, str] = {
    400: "RECALLS-BR-01",
    401: "RECALLS-UA-01",
    403: "RECALLS-FB-01",
    404: "RECALLS-NF-01",
    409: "RECALLS-CF-01",
}

_GATEWAY_MESSAGES: dict[int, str] = {
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service unavailable",
}

# Azure AD's numeric code for each way a token request can fail (see the token endpoint).
AZURE_MISSING_PARAMETER = 900144
AZURE_UNSUPPORTED_GRANT = 70003
AZURE_MISSING_SECRET = 7000216
AZURE_UNKNOWN_CLIENT = 700016
AZURE_WRONG_SECRET = 7000215
AZURE_INVALID_SCOPE = 70011
AZURE_UNAVAILABLE = 90033


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def dvsa_error(status: int, message: str) -> web.Response:
    """DVSA's error body: a request id, the errorCode for the status, and a message."""
    body = {"requestId": str(uuid.uuid4()), "errorCode": ERROR_CODES[status], "errorMessage": message}
    return json_response(status, body)


def gateway_error(status: int, retry_after: int | None = None) -> web.Response:
    """The API gateway's ``{message}`` body, used for 429, 500 and 503."""
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return json_response(status, {"message": _GATEWAY_MESSAGES[status]}, headers)


def azure_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An Azure AD token-endpoint error, with the trace and correlation ids Azure adds to each."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    return json_response(status, body)


def admin_error(message: str) -> web.Response:
    """A 400 from the admin API; the message starts with the name of the bad field."""
    return json_response(400, {"error": message})
