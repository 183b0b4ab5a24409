"""Signing in to the dashboard with an API key once, and out again: the key never travels in a URL.

``GET /dashboard/sign-in`` is a form; its ``POST`` takes the key from a small urlencoded body, checks
it has ``ops``, starts a session (see ``recalls.shared.store.sessions``) and answers with its token in a
cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure over https,
living as long as the session.  A sign-in or sign-out must come from this site's own page (its Origin
header says so): with SameSite=Strict that shuts out cross-site request forgery.  ``POST
/dashboard/sign-out`` ends the session and drops the cookie.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations (see ..routes).
import logging
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from recalls.ops.dashboard.assets import HEADERS, Assets
from recalls.producers.batch_api.auth import SESSION_COOKIE, refuse_key_in_url, scoped
from recalls.producers.batch_api.errors import ApiError
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.sessions import LIFETIME, Sessions

log = logging.getLogger("recalls.api.dashboard")

FORM_MAX = 1024  # bytes: a key is 44 characters; nothing else is read
_FORM = "application/x-www-form-urlencoded"


def router(assets: Assets, keys: ApiKeys, sessions: Sessions, *, public_url: str | None) -> APIRouter:
    """The sign-in page, sign-in and sign-out, under the dashboard's prefix."""
    entry = APIRouter()

    @entry.get("/sign-in")
    async def form(request: Request) -> Response:
        refuse_key_in_url(request)
        return await assets.get("sign-in.html")

    @entry.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        refuse_key_in_url(request)
        _same_origin(request, public_url)
        key = await keys.verify(await _form_key(request))
        if key is None:
            raise ApiError(401, "USER_NOT_FOUND", "key: unknown or revoked API key")
        scoped(key, "ops")
        token, _ends = await sessions.start(key)
        log.info("dashboard sign-in", extra={"key_id": key.id, "key_name": key.name})
        answer = RedirectResponse("../dashboard", status_code=303, headers=HEADERS)
        answer.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(LIFETIME.total_seconds()),
            path="/",
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        return answer

    @entry.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        _same_origin(request, public_url)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await sessions.end(token)
        answer = RedirectResponse("sign-in", status_code=303, headers=HEADERS)
        # A cookie is dropped only when named with the attributes it was set with.
        answer.delete_cookie(
            SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
        )
        return answer

    return entry


def _secure(request: Request) -> bool:
    """Whether the cookie may travel over https only: whenever it was set over https."""
    return request.url.scheme == "https"


def _same_origin(request: Request, public_url: str | None) -> None:
    """403 unless the request's Origin is the address it was sent to, or the API's public one."""
    own = {f"{request.url.scheme}://{request.url.netloc}"}
    if public_url is not None:
        public = urlsplit(public_url)
        own.add(f"{public.scheme}://{public.netloc}")
    origin = request.headers.get("origin")
    if origin is None or origin.lower() not in {each.lower() for each in own}:
        message = "origin: must be this dashboard's own page (a form on another site cannot sign in or out)"
        raise ApiError(403, "CROSS_ORIGIN_REQUEST", message)


async def _form_key(request: Request) -> str:
    """The ``key`` field of a urlencoded body of at most :data:`FORM_MAX` bytes; 400 or 413 otherwise."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != _FORM:
        raise ApiError(400, "INVALID_SIGN_IN", f"body: must be a form ({_FORM}) with the key field")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            raise ApiError(413, "INVALID_SIGN_IN", f"body: larger than {FORM_MAX} bytes")
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True, max_num_fields=4)
    except ValueError:  # not ASCII, a field without '=', too many fields
        raise ApiError(400, "INVALID_SIGN_IN", f"body: not a form ({_FORM})") from None
    presented = fields.get("key", [])
    if len(presented) != 1 or not presented[0]:
        raise ApiError(401, "MISSING_API_KEY", "key: required, once, as the form's key field")
    return presented[0]
