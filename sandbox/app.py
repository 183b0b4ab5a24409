"""The sandbox's aiohttp application: which handler answers which route."""

from __future__ import annotations

from aiohttp import web

from recalls.sandbox.admin import AdminApi
from recalls.sandbox.config import SandboxConfig
from recalls.sandbox.endpoints import RecallsApi
from recalls.sandbox.gateway import Gateway
from recalls.sandbox.oauth import TokenEndpoint
from recalls.sandbox.sandbox import Sandbox
from recalls.sandbox.verbs import Verb

SANDBOX = web.AppKey("sandbox", Sandbox)

TOKEN_PATH = "/oauth2/v2.0/token"  # noqa: S105 - a URL path, not a password


def build_app(config: SandboxConfig) -> web.Application:
    """A fresh application with its own empty :class:`Sandbox` (reachable as ``app[SANDBOX]``)."""
    sandbox = Sandbox(config)
    app = web.Application()
    app[SANDBOX] = sandbox
    token = TokenEndpoint(sandbox)
    recalls = RecallsApi(sandbox)
    gateway = Gateway(sandbox)
    admin = AdminApi(sandbox)
    app.add_routes(
        [
            web.post(TOKEN_PATH, token.issue),
            # Azure's own URL has the tenant first; accept that shape too, for clients configured with it.
            web.post("/{tenant}" + TOKEN_PATH, token.issue),
            web.post("/recalls", gateway.wrap(Verb.CREATE, recalls.create)),
            web.put("/recalls/vin/{vin}", gateway.wrap(Verb.FIX, recalls.fix)),
            web.get("/recalls/vin/{vin}", gateway.wrap(Verb.GET, recalls.get), allow_head=False),
            web.delete("/recalls/vin/{vin}", gateway.wrap(Verb.DELETE, recalls.delete)),
            web.post("/__admin/reset", admin.reset),
            web.get("/__admin/recalls", admin.recalls, allow_head=False),
            web.post("/__admin/recalls", admin.seed),
            web.delete("/__admin/recalls/{vin}", admin.remove),
            web.patch("/__admin/recalls/{vin}", admin.set_status),
            web.get("/__admin/requests", admin.requests, allow_head=False),
            web.get("/__admin/stats", admin.stats, allow_head=False),
            web.get("/__admin/faults", admin.faults, allow_head=False),
            web.put("/__admin/faults", admin.set_faults),
        ]
    )
    return app
