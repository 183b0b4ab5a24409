"""The admin API under ``/__admin`` (after WireMock's): inspect and steer a running sandbox.

No authentication and no rate limit: it is for tests and operators on loopback, not for the fleet.

- ``POST /__admin/reset``: forget recalls, journal, stats, rate windows and faults (tokens are kept).
- ``GET /__admin/recalls``: every recall, as a JSON list.
- ``POST /__admin/recalls``: seed recalls straight into the state (a JSON list, all or nothing): 201.
- ``DELETE /__admin/recalls/{vin}?manufacturerCampaignReference=...`` (or ``dvsaCampaignReference``): remove
  that recall whatever its status, as if DVSA had lost it: 204.
- ``PATCH /__admin/recalls/{vin}?manufacturerCampaignReference=...`` (or ``dvsaCampaignReference``) with
  ``{"repairStatus", "rectificationDate"?}``: set the status with none of DVSA's rules: 200 and the recall.
- ``GET /__admin/requests[?limit=N]``: the journal, oldest first (the newest N with ``limit``).
- ``GET /__admin/stats``: counters per verb, and the token endpoint's.
- ``GET /__admin/faults`` / ``PUT /__admin/faults``: the faults in force; PUT takes any subset of fields.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

from aiohttp import web

from recalls.sandbox import rules
from recalls.sandbox.faults import FaultSettingsError
from recalls.sandbox.responses import admin_error, json_response, no_content
from recalls.sandbox.sandbox import Sandbox
from recalls.sandbox.state import Recall, RecallNotFound, RecallStore, RepairStatus

_REQUIRED = ("vin", "manufacturerCampaignReference", "recallCampaignStartDate")
_OPTIONAL = ("dvsaCampaignReference", "repairStatus", "rectificationDate")
_STATUS_FIELDS = ("repairStatus", "rectificationDate")


class BadRequest(ValueError):
    """A malformed admin request (400); the message starts with the field or parameter at fault."""


class _Address(NamedTuple):
    """Which recall a ``/__admin/recalls/{vin}`` call points at, in the store's argument order."""

    vin: str
    manufacturer_reference: str | None
    dvsa_reference: str | None


class SeedError(ValueError):
    """A malformed seed item (400); the message starts with the item's index and field."""


class SeedConflict(SeedError):
    """A seed item whose reference its VIN already has (409); nothing of the seed is applied."""


class AdminApi:
    """The ``/__admin`` handlers."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def reset(self, request: web.Request) -> web.Response:
        self._sandbox.reset()
        return json_response(200, {"reset": True})

    async def recalls(self, request: web.Request) -> web.Response:
        return json_response(200, [_recall_view(recall) for recall in self._sandbox.store])

    async def seed(self, request: web.Request) -> web.Response:
        try:
            items: Any = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return admin_error("body: must be a JSON list of recalls")
        if not isinstance(items, list):
            return admin_error("body: must be a JSON list of recalls")
        try:
            seeds = [_seed_item(index, item) for index, item in enumerate(items)]
            _refuse_conflicts(self._sandbox.store, seeds)
        except SeedConflict as error:
            return json_response(409, {"error": str(error)})
        except SeedError as error:
            return admin_error(str(error))
        for seed in seeds:
            _put(self._sandbox.store, seed)
        return json_response(201, {"seeded": len(seeds)})

    async def remove(self, request: web.Request) -> web.Response:
        try:
            address = _address(request)
        except BadRequest as error:
            return admin_error(str(error))
        try:
            self._sandbox.store.remove(*address)
        except RecallNotFound as error:
            return json_response(404, {"error": error.message})
        return no_content()

    async def set_status(self, request: web.Request) -> web.Response:
        try:
            address = _address(request)
            status, rectification_date = _status_change(await request.read())
        except BadRequest as error:
            return admin_error(str(error))
        try:
            recall = self._sandbox.store.set_repair_status(
                *address, status, rectification_date, dvsa_rules=False
            )
        except RecallNotFound as error:
            return json_response(404, {"error": error.message})
        return json_response(200, _recall_view(recall))

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


def _address(request: web.Request) -> _Address:
    manufacturer_reference = request.query.get(rules.MANUFACTURER_REFERENCE) or None
    dvsa_reference = request.query.get(rules.DVSA_REFERENCE) or None
    if manufacturer_reference is None and dvsa_reference is None:
        raise BadRequest(
            f"{rules.MANUFACTURER_REFERENCE}: this query parameter (or {rules.DVSA_REFERENCE}) is required"
        )
    return _Address(request.match_info["vin"], manufacturer_reference, dvsa_reference)


def _status_change(body: bytes) -> tuple[RepairStatus, str | None]:
    """The status and rectification date a PATCH asks for, checked for shape only (no DVSA rules)."""
    try:
        change: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        change = None
    if not isinstance(change, dict):
        raise BadRequest("body: must be a JSON object with repairStatus and, optionally, rectificationDate")
    for name in change:
        if name not in _STATUS_FIELDS:
            raise BadRequest(f"{name}: unknown field; only repairStatus and rectificationDate can be set")
    status = change.get("repairStatus")
    if status is None:
        raise BadRequest("repairStatus: is required (FIXED or NOT_FIXED)")
    if not isinstance(status, str) or status not in RepairStatus.__members__:
        raise BadRequest("repairStatus: must be FIXED or NOT_FIXED")
    rectification_date = change.get("rectificationDate")
    if rectification_date is not None:
        try:
            rules.date(rectification_date, "rectificationDate")
        except rules.RuleViolation:
            raise BadRequest("rectificationDate: must be a real date written YYYY-MM-DD") from None
    return RepairStatus(status), rectification_date


def _seed_item(index: int, item: object) -> Recall:
    """One seed item checked minimally (required fields present, every field a string)."""
    if not isinstance(item, dict):
        raise SeedError(f"[{index}]: must be a JSON object")
    for name in (*_REQUIRED, *_OPTIONAL):
        value = item.get(name)
        if value is None and name not in _REQUIRED:
            continue
        if not isinstance(value, str) or not value:
            raise SeedError(f"[{index}].{name}: must be a non-empty string")
    status = item.get("repairStatus", RepairStatus.NOT_FIXED.value)
    if status not in RepairStatus.__members__:
        raise SeedError(f"[{index}].repairStatus: must be FIXED or NOT_FIXED")
    return Recall(
        vin=item["vin"].upper(),
        manufacturer_campaign_reference=item["manufacturerCampaignReference"],
        dvsa_campaign_reference=item.get("dvsaCampaignReference"),
        recall_campaign_start_date=item["recallCampaignStartDate"],
        repair_status=RepairStatus(status),
        rectification_date=item.get("rectificationDate"),
    )


def _refuse_conflicts(store: RecallStore, seeds: list[Recall]) -> None:
    """Refuse the whole seed if any recall's reference is already taken on its VIN (nothing half-seeded)."""
    taken: set[tuple[str, str, str]] = set()
    for index, seed in enumerate(seeds):
        keys = [(seed.vin, "manufacturerCampaignReference", seed.manufacturer_campaign_reference)]
        if seed.dvsa_campaign_reference is not None:
            keys.append((seed.vin, "dvsaCampaignReference", seed.dvsa_campaign_reference))
        for vin, field, reference in keys:
            by_reference = (
                (reference, None) if field == "manufacturerCampaignReference" else (None, reference)
            )
            if (vin, field, reference) in taken or store.select(vin, *by_reference):
                raise SeedConflict(f"[{index}].{field}: VIN {vin} already has a recall with {reference}")
            taken.add((vin, field, reference))


def _put(store: RecallStore, seed: Recall) -> None:
    recall = store.create(
        seed.vin,
        seed.manufacturer_campaign_reference,
        seed.dvsa_campaign_reference,
        seed.recall_campaign_start_date,
    )
    recall.repair_status = seed.repair_status
    recall.rectification_date = seed.rectification_date
