"""DVSA's four recall endpoints: parse and check the request, change the store, answer as DVSA does.

Authentication, rate limiting and faults happen before these handlers run (see ``recalls.sandbox.gateway``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from recalls.sandbox import rules
from recalls.sandbox.responses import dvsa_error, json_response, no_content
from recalls.sandbox.sandbox import Sandbox
from recalls.sandbox.state import Recall, StateError

_Method = Callable[["RecallsApi", web.Request], Awaitable[web.Response]]


def _dvsa_errors(handler: _Method) -> _Method:
    """Answer a broken rule or a refused state change with DVSA's error body."""

    @functools.wraps(handler)
    async def answer(self: RecallsApi, request: web.Request) -> web.Response:
        try:
            return await handler(self, request)
        except rules.RuleViolation as error:
            return dvsa_error(400, error.message)
        except StateError as error:
            return dvsa_error(error.status, error.message)

    return answer


class RecallsApi:
    """The handlers for ``/recalls`` and ``/recalls/vin/{vin}``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._store = sandbox.store
        self._manufacturer = sandbox.config.manufacturer
        self._conflict = sandbox.config.conflict

    @_dvsa_errors
    async def create(self, request: web.Request) -> web.Response:
        command = rules.create_request(rules.json_object(await request.read()))
        recall = self._store.create(
            command.vin,
            command.manufacturer_reference,
            command.dvsa_reference,
            command.start_date,
            conflict=self._conflict,
        )
        body = {"manufacturer": self._manufacturer, "recall": _created(recall)}
        return json_response(201, body)

    @_dvsa_errors
    async def fix(self, request: web.Request) -> web.Response:
        vin = rules.vin(request.match_info["vin"])
        selector = rules.campaign_selector(request.query, required=True)
        update = rules.update_request(rules.json_object(await request.read()))
        self._store.set_repair_status(
            vin,
            selector.manufacturer_reference,
            selector.dvsa_reference,
            update.repair_status,
            update.rectification_date,
        )
        return no_content()

    @_dvsa_errors
    async def get(self, request: web.Request) -> web.Response:
        vin = rules.vin(request.match_info["vin"])
        selector = rules.campaign_selector(request.query, required=False)
        found = self._store.select(vin, selector.manufacturer_reference, selector.dvsa_reference)
        if not found:
            suffix = "" if selector.empty else " matching the campaign reference"
            return dvsa_error(404, f"No recalls found for VIN {vin}{suffix}")
        body = {
            "vin": vin,
            "manufacturer": self._manufacturer,
            "recalls": [_detail(recall) for recall in found],
            "lastUpdatedDate": self._store.last_updated(vin),
        }
        return json_response(200, body)

    @_dvsa_errors
    async def delete(self, request: web.Request) -> web.Response:
        vin = rules.vin(request.match_info["vin"])
        selector = rules.campaign_selector(request.query, required=True)
        self._store.delete(vin, selector.manufacturer_reference, selector.dvsa_reference)
        return no_content()


def _created(recall: Recall) -> dict[str, str]:
    return _without_none(
        {
            "vin": recall.vin,
            "manufacturerCampaignReference": recall.manufacturer_campaign_reference,
            "dvsaCampaignReference": recall.dvsa_campaign_reference,
            "recallCampaignStartDate": recall.recall_campaign_start_date,
        }
    )


def _detail(recall: Recall) -> dict[str, str]:
    return _without_none(
        {
            "manufacturerCampaignReference": recall.manufacturer_campaign_reference,
            "dvsaCampaignReference": recall.dvsa_campaign_reference,
            "recallCampaignStartDate": recall.recall_campaign_start_date,
            "repairStatus": recall.repair_status.value,
        }
    )


def _without_none(body: dict[str, str | None]) -> dict[str, str]:
    # DVSA is a Node service: a reference that was never given is left out, not sent as null.
    return {key: value for key, value in body.items() if value is not None}
