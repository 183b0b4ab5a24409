"""The dashboard's endpoints: the page (``/dashboard``), its snapshot (``/dashboard/data``), its assets.

The page and the snapshot show the whole fleet, so they need a key with the ``ops`` scope: a session
of a sign-in (``sign_in``), or the key in the ``x-api-key`` header, never in the URL.  A browser that
presents neither is sent to the sign-in page.  The script, style and icon are the same for everyone and
hold nothing, so they are served without a key.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations (see ..routes).
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from recalls.ops.dashboard import sign_in
from recalls.ops.dashboard.assets import HEADERS, Assets
from recalls.ops.dashboard.board import Dashboard
from recalls.producers.batch_api.auth import authenticator, identifier, scoped
from recalls.shared.store.api_keys import ApiKey, ApiKeys
from recalls.shared.store.sessions import Sessions


def router(dashboard: Dashboard, keys: ApiKeys, sessions: Sessions, *, public_url: str | None) -> APIRouter:
    """The dashboard's endpoints, for the keys with ``ops`` and their sessions.

    ``public_url``: the API's public address, an origin a sign-in may come from besides the request's own.
    """
    page = APIRouter(prefix="/dashboard", include_in_schema=False)
    assets = Assets()
    visitor = Depends(identifier(keys, sessions, key_in_url=False))
    operator = Depends(authenticator(keys, sessions, "ops", key_in_url=False))

    @page.get("", response_class=HTMLResponse)
    async def show(key: Annotated[ApiKey | None, visitor]) -> Response:
        if key is None:
            return RedirectResponse("dashboard/sign-in", status_code=303, headers=HEADERS)
        scoped(key, "ops")
        return await assets.get("page.html")

    @page.get("/data")
    async def data(key: Annotated[ApiKey, operator]) -> JSONResponse:
        snapshot: dict[str, Any] = await dashboard.snapshot(key.id)
        return JSONResponse(snapshot, headers=HEADERS)

    for name in ("dashboard.js", "sign-in.js", "dashboard.css", "favicon.svg"):
        page.add_api_route(f"/{name}", _served(assets, name), methods=["GET"])
    page.include_router(sign_in.router(assets, keys, sessions, public_url=public_url))
    return page


def _served(assets: Assets, name: str) -> Callable[[], Awaitable[Response]]:
    async def asset() -> Response:
        return await assets.get(name)

    return asset
