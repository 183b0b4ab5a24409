"""The admin API under ``/__admin`` (after WireMock's): inspect and steer a running sandbox.

No authentication and no rate limit: it is for tests and operators on loopback, not for the fleet.

- ``POST /__admin/reset``: forget recalls, journal, stats, rate windows and faults (tokens are kept).
- ``GET /__admin/recalls``: every recall, as a JSON list.
- ``GET /__admin/requests[?limit=N]``: the journal, oldest first (the newest N with ``limit``).
- ``GET /__admin/stats``: counters per verb, and the token endpoint's.
- ``GET /__admin/faults`` / ``PUT /__admin/faults``: the faults in force; PUT takes any subset of fields.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from simulator.faults import FaultSettingsError
from simulator.responses import admin_error, json_response
from simulator.sandbox import Sandbox
from simulator.state import Recall


class AdminApi:
    """The ``/__admin`` handlers."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def reset(self, request: web.Request) -> web.Response:
        self._sandbox.reset()
        return json_response(200, {"reset": True})

    async def recalls(self, request: web.Request) -> web.Response:
        return json_response(200, [_recall_view(recall) for recall in self._sandbox.store])

    async def requests(self, request: web.Request) -> web.Response:
        raw_limit = request.query.get("limit")
        limit: int | None = None
        if raw_limit is not None:
            if not raw_limit.isdigit() or int(raw_limit) < 1:
                return admin_error("limit: must be a whole number of at least 1")
            limit = int(raw_limit)
        entries = self._sandbox.journal.newest(limit)
        return json_response(200, [entry.as_json() for entry in entries])

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(200, self._sandbox.stats.as_json())

    async def faults(self, request: web.Request) -> web.Response:
        return json_response(200, self._sandbox.faults.snapshot(time.monotonic()))

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            changes: Any = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return admin_error("body: must be a JSON object of fault settings")
        if not isinstance(changes, dict):
            return admin_error("body: must be a JSON object of fault settings")
        now = time.monotonic()
        try:
            self._sandbox.faults.update(changes, now)
        except FaultSettingsError as error:
            return admin_error(str(error))
        return json_response(200, self._sandbox.faults.snapshot(now))


def _recall_view(recall: Recall) -> dict[str, str | None]:
    return {
        "vin": recall.vin,
        "manufacturerCampaignReference": recall.manufacturer_campaign_reference,
        "dvsaCampaignReference": recall.dvsa_campaign_reference,
        "recallCampaignStartDate": recall.recall_campaign_start_date,
        "repairStatus": recall.repair_status.value,
        "rectificationDate": recall.rectification_date,
    }
