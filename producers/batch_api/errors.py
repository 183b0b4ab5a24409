"""The batch API's one error shape, ``{"success": false, "error": NAME, "message": "field: reason"}``.

Every failure a client can meet leaves through here with CarsXE's status code and name: the API's own
refusals (:class:`ApiError`, a body too large and a key over its quota among them), FastAPI's request
validation (400, naming the field), routing's 404 and 405, and the store's failures (500).  Messages
name the field and the reason and never hold a key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

log = logging.getLogger("recalls.api")

ErrorName = Literal[
    "BULK_RECALL_BATCH_MISSING_VINS",
    "BULK_RECALL_BATCH_TOO_MANY_VINS",
    "BULK_RECALL_BATCH_INVALID_VIN",
    "BULK_RECALL_BATCH_CSV_URL_INVALID",
    "BULK_RECALL_BATCH_CSV_URL_HOST_NOT_ALLOWED",
    "BULK_RECALL_BATCH_CSV_URL_TOO_LARGE",
    "BULK_RECALL_BATCH_CSV_URL_NOT_TEXT",
    "BULK_RECALL_BATCH_CSV_URL_HTTP_ERROR",
    "BULK_RECALL_BATCH_CSV_URL_REDIRECT_ERROR",
    "BULK_RECALL_BATCH_CSV_URL_TIMEOUT",
    "BULK_RECALL_BATCH_INVALID_WEBHOOK_URL",
    "BULK_RECALL_BATCH_INVALID_REQUEST",
    "MISSING_API_KEY",
    "USER_NOT_FOUND",
    "BULK_RECALL_BATCH_NOT_FOUND",
    "NOT_FOUND",
    "ONLY_POST_ALLOWED",
    "METHOD_NOT_ALLOWED",
    "BULK_RECALL_BATCH_NOT_COMPLETE",
    "BULK_RECALL_BATCH_STORAGE_ERROR",
    "BULK_RECALL_BATCH_CSV_URL_FETCH_FAILED",
    "BULK_RECALL_BATCH_TOO_LARGE",
    "BULK_RECALL_BATCH_RATE_LIMITED",
    "INSUFFICIENT_SCOPE",
    "API_KEY_IN_URL",
    "SESSION_ENDED",
    "CROSS_ORIGIN_REQUEST",
    "INVALID_SIGN_IN",
]
SUBMIT_PATH = "/v1/recalls-batch/submit"


class ErrorBody(BaseModel):
    """What every failed request answers."""

    success: Literal[False] = False
    error: ErrorName = Field(description="What went wrong, as a stable name to branch on.")
    message: str = Field(description="The field and the reason, e.g. `vins[3]: must be 16 or 17 letters`.")


class ApiError(Exception):
    """A refusal to answer with ``status``, the error shape and ``headers`` (e.g. ``Retry-After``)."""

    def __init__(
        self, status: int, name: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{name}: {message}")
        self.status = status
        self.name = name
        self.message = message
        self.headers = headers


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an endpoint can answer with."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }
    if 429 in responses:
        responses[429]["headers"] = {"Retry-After": _RETRY_AFTER}
    return responses


_DESCRIPTIONS = {
    400: "The request is invalid (missing or invalid VINs, too many, a refused csvUrl or webhookUrl, "
    "a body that is not JSON or has a field of the wrong type).",
    401: "No API key (MISSING_API_KEY), an unknown or revoked one (USER_NOT_FOUND), or a dashboard "
    "session that has ended (SESSION_ENDED).",
    403: "The key lacks the scope this needs (INSUFFICIENT_SCOPE).",
    404: "No such batch for this key (BULK_RECALL_BATCH_NOT_FOUND).",
    409: "The batch is still running (BULK_RECALL_BATCH_NOT_COMPLETE).",
    413: "The body is larger than this API accepts (BULK_RECALL_BATCH_TOO_LARGE).",
    429: "The key submitted its most batches a minute, or has its most batches open "
    "(BULK_RECALL_BATCH_RATE_LIMITED); retry after Retry-After seconds.",
    500: "The store failed (BULK_RECALL_BATCH_STORAGE_ERROR); retry later.",
    502: "The csvUrl could not be fetched (BULK_RECALL_BATCH_CSV_URL_FETCH_FAILED).",
}
_RETRY_AFTER = {"description": "Seconds to wait before submitting again.", "schema": {"type": "integer"}}


def install(app: FastAPI) -> None:
    """Make every error of ``app`` answer in the one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _storage_error)
    app.add_exception_handler(OSError, _storage_error)
    app.add_exception_handler(Exception, _internal_error)


def _answer(status: int, name: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"success": False, "error": name, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def response_for(error: ApiError) -> JSONResponse:
    """The answer to ``error``, for a refusal made outside FastAPI's handlers (a middleware's)."""
    return _answer(error.status, error.name, error.message, error.headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return response_for(exc)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(_describe(error) for error in exc.errors())
    return _answer(400, "BULK_RECALL_BATCH_INVALID_REQUEST", message or "body: invalid")


def _describe(error: dict[str, Any]) -> str:
    """``vins[2]: Input should be a valid string`` from one of pydantic's errors (its input left out)."""
    field = ""
    for part in error.get("loc", ())[1:]:  # the first part says where: body, query, header
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    reason = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        field, reason = "body", f"not valid JSON ({error.get('ctx', {}).get('error', 'unreadable')})"
    return f"{field or 'body'}: {reason}"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        only = "POST" if path == SUBMIT_PATH else "GET"
        name = "ONLY_POST_ALLOWED" if path == SUBMIT_PATH else "METHOD_NOT_ALLOWED"
        return _answer(405, name, f"method: {request.method} not allowed, use {only}", exc.headers)
    if exc.status_code == 404:
        return _answer(404, "NOT_FOUND", f"path: no endpoint at {path}", exc.headers)
    if exc.status_code == 400:  # FastAPI's own answer to a body it cannot decode (not UTF-8)
        return _answer(400, "BULK_RECALL_BATCH_INVALID_REQUEST", "body: not valid JSON (not UTF-8 text)")
    return _answer(exc.status_code, f"HTTP_{exc.status_code}", f"request: {exc.detail}", exc.headers)


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("store failed during %s %s: %r", request.method, request.url.path, exc)
    return _answer(500, "BULK_RECALL_BATCH_STORAGE_ERROR", "store: unavailable, retry later")


async def _internal_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette logs the traceback itself after this answer is sent.
    return _answer(500, "BULK_RECALL_BATCH_STORAGE_ERROR", "server: internal error, retry later")
