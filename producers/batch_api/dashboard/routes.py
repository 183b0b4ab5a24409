"""The dashboard's endpoints: the page (``/dashboard``), its snapshot (``/dashboard/data``), its assets.

The page and the snapshot show the whole fleet, so they need a key with the ``ops`` scope; the script,
style and icon are the same for everyone and hold nothing, so they are served without one.  Everything
is this package's own files: the network may be closed, and the policy header forbids anything from
elsewhere.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations (see ..routes).
import asyncio
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from producers.batch_api.auth import Caller
from producers.batch_api.dashboard.board import Dashboard
from shared.store.api_keys import ApiKey

_ASSETS = {
    "page.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",  # the page's address holds the key
    "X-Content-Type-Options": "nosniff",
}


class _Assets:
    """The package's page, script and style, read once (off the event loop) on first use."""

    def __init__(self) -> None:
        self._read: dict[str, str] | None = None

    async def get(self, name: str) -> Response:
        if self._read is None:
            self._read = await asyncio.to_thread(_read_assets)
        media_type = _ASSETS[name]
        return Response(self._read[name], media_type=f"{media_type}; charset=utf-8", headers=_HEADERS)


def _read_assets() -> dict[str, str]:
    package = resources.files(__package__)
    return {name: package.joinpath(name).read_text(encoding="utf-8") for name in _ASSETS}


def router(dashboard: Dashboard, caller: Caller) -> APIRouter:
    """The dashboard's endpoints, for the callers ``caller`` lets in."""
    page = APIRouter(prefix="/dashboard", include_in_schema=False)
    assets = _Assets()
    by_key = Depends(caller)

    @page.get("", response_class=HTMLResponse)
    async def show(_key: Annotated[ApiKey, by_key]) -> Response:
        return await assets.get("page.html")

    @page.get("/data")
    async def data(key: Annotated[ApiKey, by_key]) -> JSONResponse:
        snapshot: dict[str, Any] = await dashboard.snapshot(key.id)
        return JSONResponse(snapshot, headers=_HEADERS)

    @page.get("/dashboard.js")
    async def script() -> Response:
        return await assets.get("dashboard.js")

    @page.get("/dashboard.css")
    async def style() -> Response:
        return await assets.get("dashboard.css")

    @page.get("/favicon.svg")
    async def icon() -> Response:
        return await assets.get("favicon.svg")

    return page
