"""The dashboard's own files (pages, scripts, style, icon) and the headers every dashboard answer carries.

Everything is this package's own: the network may be closed, and the policy header forbids anything
from elsewhere.  Forms may post to this site only (the sign-in and sign-out forms).
"""

from __future__ import annotations

import asyncio
from importlib import resources

from fastapi.responses import Response

_TYPES = {
    "page.html": "text/html",
    "sign-in.html": "text/html",
    "dashboard.js": "text/javascript",
    "sign-in.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'",
    # No address of the dashboard goes to another site; same-origin rather than no-referrer, under
    # which a browser sends "Origin: null" with a form's post and the sign-out would be refused.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


class Assets:
    """The package's files, read once (off the event loop) on first use."""

    def __init__(self) -> None:
        self._read: dict[str, str] | None = None

    async def get(self, name: str) -> Response:
        if self._read is None:
            self._read = await asyncio.to_thread(_read_assets)
        media_type = _TYPES[name]
        return Response(self._read[name], media_type=f"{media_type}; charset=utf-8", headers=HEADERS)


def _read_assets() -> dict[str, str]:
    package = resources.files(__package__)
    return {name: package.joinpath(name).read_text(encoding="utf-8") for name in _TYPES}
