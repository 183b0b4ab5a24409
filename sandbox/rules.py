"""The sandbox's own reading of DVSA's input rules: what makes a VIN, a reference, a date or a body valid.

Every check raises :class:`RuleViolation` with a message that names the offending field, answered as 400
``RECALLS-BR-01``.  These rules are written from DVSA's documentation independently of the fleet's client,
so a client that is stricter or looser than DVSA shows up as a disagreement in the tests.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from recalls.sandbox.state import RepairStatus

INVALID_BODY = "Invalid request body"

# DVSA's own examples include 16-character VINs (older and non-ISO vehicles), so 16 is allowed too.
_VIN = re.compile(r"[A-Za-z0-9]{16,17}")
_MANUFACTURER_REFERENCE = re.compile(r"[A-Za-z0-9_/\\-]{1,49}")
_DVSA_REFERENCE = re.compile(r"[A-Za-z]+/[0-9]{4}/[0-9]{3}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

MANUFACTURER_REFERENCE = "manufacturerCampaignReference"
DVSA_REFERENCE = "dvsaCampaignReference"


class RuleViolation(ValueError):
    """The request breaks one of DVSA's input rules; the message says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class CreateRequest:
    vin: str  # upper-cased
    manufacturer_reference: str
    dvsa_reference: str | None
    start_date: str


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    repair_status: RepairStatus
    rectification_date: str | None


@dataclass(frozen=True, slots=True)
class CampaignSelector:
    """Which recall(s) of a vehicle a query string points at; ``None`` means "any"."""

    manufacturer_reference: str | None
    dvsa_reference: str | None

    @property
    def empty(self) -> bool:
        return self.manufacturer_reference is None and self.dvsa_reference is None


def vin(raw: str) -> str:
    """A valid VIN, upper-cased."""
    if not _VIN.fullmatch(raw):
        raise RuleViolation("vin must be 16 or 17 letters or digits")
    return raw.upper()


def manufacturer_reference(raw: object) -> str:
    if not isinstance(raw, str) or not _MANUFACTURER_REFERENCE.fullmatch(raw):
        raise RuleViolation(
            f"{MANUFACTURER_REFERENCE} must be 1 to 49 letters, digits, or the characters _ / \\ -"
        )
    return raw


def dvsa_reference(raw: object) -> str:
    if not isinstance(raw, str) or not _DVSA_REFERENCE.fullmatch(raw):
        raise RuleViolation(
            f"{DVSA_REFERENCE} must be letters, a slash, 4 digits, a slash and 3 digits (like R/2022/123)"
        )
    return raw


def date(raw: object, field: str) -> str:
    """A real calendar date written ``YYYY-MM-DD``."""
    if not isinstance(raw, str) or not _DATE.fullmatch(raw):
        raise RuleViolation(f"{field} must be a date written YYYY-MM-DD")
    try:
        dt.date.fromisoformat(raw)
    except ValueError:
        raise RuleViolation(f"{field} is not a real calendar date") from None
    return raw


def json_object(body: bytes) -> Mapping[str, object]:
    """The request body as a JSON object, or the DVSA error for anything else."""
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RuleViolation(INVALID_BODY) from None
    if not isinstance(parsed, dict):
        raise RuleViolation(INVALID_BODY)
    return parsed


def create_request(body: Mapping[str, object]) -> CreateRequest:
    raw_vin = body.get("vin")
    if _absent(raw_vin):
        raise RuleViolation("vin is required")
    if not isinstance(raw_vin, str):
        raise RuleViolation("vin must be a string")
    if _absent(body.get(MANUFACTURER_REFERENCE)):
        raise RuleViolation(f"{MANUFACTURER_REFERENCE} is required")
    if _absent(body.get("recallCampaignStartDate")):
        raise RuleViolation("recallCampaignStartDate is required")
    raw_dvsa = body.get(DVSA_REFERENCE)
    return CreateRequest(
        vin=vin(raw_vin),
        manufacturer_reference=manufacturer_reference(body[MANUFACTURER_REFERENCE]),
        # Optional since DVSA's mock 2.x; an empty string means "not given", as it does for DVSA.
        dvsa_reference=None if _absent(raw_dvsa) else dvsa_reference(raw_dvsa),
        start_date=date(body["recallCampaignStartDate"], "recallCampaignStartDate"),
    )


def update_request(body: Mapping[str, object]) -> UpdateRequest:
    raw_status = body.get("repairStatus")
    if _absent(raw_status):
        raise RuleViolation("repairStatus is required")
    if raw_status not in (RepairStatus.FIXED.value, RepairStatus.NOT_FIXED.value):
        raise RuleViolation("repairStatus must be FIXED or NOT_FIXED")
    status = RepairStatus(str(raw_status))
    raw_date = body.get("rectificationDate")
    # DVSA needs the date to mark a recall fixed; re-opening (NOT_FIXED) works without one.
    if _absent(raw_date):
        if status is RepairStatus.FIXED:
            raise RuleViolation("rectificationDate is required when repairStatus is FIXED")
        return UpdateRequest(repair_status=status, rectification_date=None)
    return UpdateRequest(repair_status=status, rectification_date=date(raw_date, "rectificationDate"))


def campaign_selector(query: Mapping[str, str], *, required: bool) -> CampaignSelector:
    """The references in a query string, validated; ``required``: at least one must be there."""
    raw_manufacturer = query.get(MANUFACTURER_REFERENCE) or None
    raw_dvsa = query.get(DVSA_REFERENCE) or None
    if required and raw_manufacturer is None and raw_dvsa is None:
        raise RuleViolation(f"query parameter {MANUFACTURER_REFERENCE} or {DVSA_REFERENCE} is required")
    return CampaignSelector(
        manufacturer_reference=None if raw_manufacturer is None else manufacturer_reference(raw_manufacturer),
        dvsa_reference=None if raw_dvsa is None else dvsa_reference(raw_dvsa),
    )


def _absent(value: object) -> bool:
    return value is None or value == ""
