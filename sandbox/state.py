"""The sandbox's memory of DVSA's data: recalls per vehicle, and the state changes DVSA allows on them.

Vehicles are keyed by VIN upper-cased (DVSA treats VINs case-insensitively).  Within a vehicle a recall is
identified by its manufacturerCampaignReference, and also by its dvsaCampaignReference when it has one: both
are unique per VIN, so a fix or delete addressed by either reference finds exactly one recall.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

# Which earlier recalls make a create a 409: one with the same campaign (the sandbox's own reading of
# DVSA), or any recall at all of the same VIN (what DVSA's public mock, dvsa/recalls-mock-api, does).
ConflictRule = Literal["vin", "campaign"]


class RepairStatus(enum.StrEnum):
    FIXED = "FIXED"
    NOT_FIXED = "NOT_FIXED"


ALREADY_FIXED = "Vehicle recall has already been marked as fixed"
ALREADY_NOT_FIXED = "Vehicle recall has already been marked as not fixed"
RECTIFIED_BEFORE_START = "Recall rectification date cannot be before recall campaign start date"


class StateError(Exception):
    """A request DVSA refuses because of what it already holds; ``status`` is the HTTP status."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RecallRefused(StateError):
    status = 400


class RecallNotFound(StateError):
    status = 404


class RecallConflict(StateError):
    status = 409


@dataclass(slots=True)
class Recall:
    """One recall campaign on one vehicle.  Dates are validated ``YYYY-MM-DD`` strings."""

    vin: str
    manufacturer_campaign_reference: str
    dvsa_campaign_reference: str | None
    recall_campaign_start_date: str
    repair_status: RepairStatus = RepairStatus.NOT_FIXED
    rectification_date: str | None = None

    def matches(self, manufacturer_reference: str | None, dvsa_reference: str | None) -> bool:
        """True if the recall has every reference given (a ``None`` reference matches anything)."""
        return (
            manufacturer_reference is None or manufacturer_reference == self.manufacturer_campaign_reference
        ) and (dvsa_reference is None or dvsa_reference == self.dvsa_campaign_reference)


@dataclass(slots=True)
class Vehicle:
    vin: str
    last_updated: str
    recalls: dict[str, Recall] = field(default_factory=dict)  # by manufacturer reference


def utc_timestamp() -> str:
    """Now in ISO 8601 UTC with milliseconds, the way DVSA (a Node service) writes timestamps."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecallStore:
    """All recalls, with DVSA's rules for creating, fixing, re-opening and deleting them."""

    def __init__(self, clock: Callable[[], str] = utc_timestamp) -> None:
        self._vehicles: dict[str, Vehicle] = {}
        self._clock = clock

    def create(
        self,
        vin: str,
        manufacturer_reference: str,
        dvsa_reference: str | None,
        start_date: str,
        *,
        conflict: ConflictRule = "campaign",
    ) -> Recall:
        """Add a NOT_FIXED recall; :class:`RecallConflict` if the VIN already has either reference.

        With ``conflict="vin"`` any recall already held for the VIN is a conflict, as in DVSA's mock.
        """
        vin = vin.upper()
        vehicle = self._vehicles.get(vin)
        if vehicle is not None:
            if conflict == "vin":
                _refuse_known_vehicle(vehicle)
            _refuse_duplicates(vehicle, manufacturer_reference, dvsa_reference)
        else:
            vehicle = self._vehicles[vin] = Vehicle(vin=vin, last_updated="")
        recall = Recall(vin, manufacturer_reference, dvsa_reference, start_date)
        vehicle.recalls[manufacturer_reference] = recall
        vehicle.last_updated = self._clock()
        return recall

    def select(
        self, vin: str, manufacturer_reference: str | None, dvsa_reference: str | None
    ) -> list[Recall]:
        """The VIN's recalls that carry the given references (all of them if neither is given)."""
        vehicle = self._vehicles.get(vin.upper())
        if vehicle is None:
            return []
        return [
            recall
            for recall in vehicle.recalls.values()
            if recall.matches(manufacturer_reference, dvsa_reference)
        ]

    def last_updated(self, vin: str) -> str | None:
        vehicle = self._vehicles.get(vin.upper())
        return None if vehicle is None else vehicle.last_updated

    def set_repair_status(
        self,
        vin: str,
        manufacturer_reference: str | None,
        dvsa_reference: str | None,
        status: RepairStatus,
        rectification_date: str | None,
        *,
        dvsa_rules: bool = True,
    ) -> Recall:
        """Mark a recall FIXED, or re-open it with NOT_FIXED, as DVSA allows.

        ``dvsa_rules=False`` skips DVSA's checks: a change made behind the fleet's back (the admin API's).
        The rectification date is kept only with FIXED either way, as DVSA keeps it.
        """
        recall = self._one(vin, manufacturer_reference, dvsa_reference)
        if dvsa_rules:
            _refuse_transition(recall, status, rectification_date)
        recall.rectification_date = rectification_date if status is RepairStatus.FIXED else None
        recall.repair_status = status
        self._touch(recall.vin)
        return recall

    def delete(self, vin: str, manufacturer_reference: str | None, dvsa_reference: str | None) -> Recall:
        """Remove an open recall; a FIXED one is DVSA's record of a repair and cannot be deleted."""
        recall = self._one(vin, manufacturer_reference, dvsa_reference)
        if recall.repair_status is RepairStatus.FIXED:
            raise RecallRefused(ALREADY_FIXED)
        self._remove(recall)
        return recall

    def remove(self, vin: str, manufacturer_reference: str | None, dvsa_reference: str | None) -> Recall:
        """Remove a recall whatever its status: DVSA losing or dropping a record behind the fleet's back."""
        recall = self._one(vin, manufacturer_reference, dvsa_reference)
        self._remove(recall)
        return recall

    def _remove(self, recall: Recall) -> None:
        vehicle = self._vehicles[recall.vin]
        del vehicle.recalls[recall.manufacturer_campaign_reference]
        if vehicle.recalls:
            vehicle.last_updated = self._clock()
        else:
            del self._vehicles[recall.vin]

    def __iter__(self) -> Iterator[Recall]:
        for vehicle in self._vehicles.values():
            yield from vehicle.recalls.values()

    def __len__(self) -> int:
        return sum(len(vehicle.recalls) for vehicle in self._vehicles.values())

    def clear(self) -> None:
        self._vehicles.clear()

    def _one(self, vin: str, manufacturer_reference: str | None, dvsa_reference: str | None) -> Recall:
        found = self.select(vin, manufacturer_reference, dvsa_reference)
        if not found:
            raise RecallNotFound(_not_found_message(vin, manufacturer_reference, dvsa_reference))
        # References are unique per VIN (see create), so at most one recall matches.
        return found[0]

    def _touch(self, vin: str) -> None:
        self._vehicles[vin].last_updated = self._clock()


def _refuse_transition(recall: Recall, status: RepairStatus, rectification_date: str | None) -> None:
    if status is RepairStatus.FIXED:
        # DVSA checks the date before the status: a repeated fix with a bad date gets the date error.
        if rectification_date is not None and (
            rectification_date < recall.recall_campaign_start_date  # ISO dates sort as strings
        ):
            raise RecallRefused(RECTIFIED_BEFORE_START)
        if recall.repair_status is RepairStatus.FIXED:
            raise RecallRefused(ALREADY_FIXED)
    elif recall.repair_status is RepairStatus.NOT_FIXED:
        raise RecallRefused(ALREADY_NOT_FIXED)


def _refuse_known_vehicle(vehicle: Vehicle) -> None:
    # DVSA's mock names the vehicle's first campaign, whichever one was asked for.
    first = next(iter(vehicle.recalls.values()))
    # A first campaign without a DVSA reference is named by its manufacturer reference instead of "undefined".
    reference = first.dvsa_campaign_reference or first.manufacturer_campaign_reference
    raise RecallConflict(
        f"Vehicle already registered with VIN: {vehicle.vin} and DvsaCampaignReference: {reference}"
    )


def _refuse_duplicates(vehicle: Vehicle, manufacturer_reference: str, dvsa_reference: str | None) -> None:
    if manufacturer_reference in vehicle.recalls:
        raise RecallConflict(
            f"Vehicle already has a recall with VIN {vehicle.vin} and "
            f"manufacturerCampaignReference {manufacturer_reference}"
        )
    if dvsa_reference is None:
        return
    for recall in vehicle.recalls.values():
        if recall.dvsa_campaign_reference == dvsa_reference:
            raise RecallConflict(
                f"Vehicle already has a recall with VIN {vehicle.vin} and "
                f"dvsaCampaignReference {dvsa_reference}"
            )


def _not_found_message(vin: str, manufacturer_reference: str | None, dvsa_reference: str | None) -> str:
    references = [
        f"{name} {value}"
        for name, value in (
            ("manufacturerCampaignReference", manufacturer_reference),
            ("dvsaCampaignReference", dvsa_reference),
        )
        if value is not None
    ]
    where = f" and {' and '.join(references)}" if references else ""
    return f"No recall found for VIN {vin.upper()}{where}"
