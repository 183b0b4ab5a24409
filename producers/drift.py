"""Where the ledger and DVSA disagree about one vehicle, and what would bring DVSA back in line.

Pure functions of the ledger's entries for a vehicle and DVSA's answer to a ``get`` of it, so every rule
is tested from tables with no broker (``recalls reconcile`` acts on them in
:mod:`recalls.producers.reconcile`).
Three kinds of drift, per campaign (manufacturer reference):

- ``missing_at_dvsa``: the ledger holds it open or fixed; DVSA has no such campaign for the vehicle.
- ``status_differs``: both hold it, one open and the other fixed; or the ledger says deleted and DVSA
  still holds it.
- ``unknown_to_ledger``: DVSA holds a campaign of the vehicle that the ledger has no entry for.

Entries in doubt (a delete still ``deleting``) and entries changed after DVSA answered are not judged:
the sweep's answer is older than what the ledger knows of them.

A repair brings DVSA back to the ledger (a create for a campaign DVSA lacks, and its fix if the ledger
holds it fixed; a fix either way for a status that differs) and writes an unknown campaign into the
ledger as DVSA reports it.  It never deletes: a ledger that says deleted while DVSA holds the recall is
reported, not acted on.  What cannot be repaired without guessing (a fix whose date the ledger lacks)
is reported with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from recalls.shared.contracts import Command, CreateCommand, FixCommand, Recall, RepairStatus
from recalls.shared.message_ids import content_id
from recalls.shared.store.ledger import LedgerEntry

Kind = Literal["missing_at_dvsa", "status_differs", "unknown_to_ledger"]
KINDS: tuple[Kind, ...] = ("missing_at_dvsa", "status_differs", "unknown_to_ledger")
DEFAULT_MAX_REPAIR_SHARE = 0.05
ABSENT = "absent"
_JUDGED_STATES = {"open", "fixed", "deleted"}  # not "deleting": a delete still in doubt


@dataclass(frozen=True)
class Answer:
    """DVSA's answer to a sweep's ``get`` of one vehicle (no recalls: DVSA holds none, or said 404)."""

    vin: str
    recalls: Sequence[Recall]
    answered_at: dt.datetime
    message_id: str


@dataclass(frozen=True)
class Drift:
    """One campaign of one vehicle on which the ledger and DVSA disagree."""

    vin: str
    campaign: str
    kind: Kind
    ledger_says: str  # open, fixed, deleted or absent
    dvsa_says: str  # open, fixed or absent


@dataclass(frozen=True)
class Repair:
    """What mends one drift: commands to DVSA, an answer to write into the ledger, or why neither."""

    drift: Drift
    commands: tuple[Command, ...] = ()
    record: Answer | None = None  # DVSA's answer, of which the drift's campaign goes into the ledger
    not_repaired: str | None = None


class MassRepairRefused(Exception):
    """The repairs would touch more than the allowed share of the vehicles swept."""


def dvsa_state(recall: Recall) -> str:
    """DVSA's repair status in the ledger's words."""
    return {"FIXED": "fixed", "NOT_FIXED": "open"}.get(recall.repair_status or "", str(recall.repair_status))


def compare(entries: Sequence[LedgerEntry], answer: Answer) -> list[Drift]:
    """Every campaign of ``answer.vin`` on which the ledger's ``entries`` and DVSA's answer disagree."""
    held = {recall.manufacturer_campaign_reference: recall for recall in answer.recalls}
    known = {entry.manufacturer_campaign_reference for entry in entries}
    drifts: list[Drift] = []
    for entry in entries:
        if entry.state not in _JUDGED_STATES or entry.updated_at > answer.answered_at:
            continue
        recall = held.get(entry.manufacturer_campaign_reference)
        drift = _judge(entry, None if recall is None else dvsa_state(recall))
        if drift is not None:
            drifts.append(drift)
    for reference, recall in held.items():
        if reference not in known:
            drifts.append(Drift(answer.vin, reference, "unknown_to_ledger", ABSENT, dvsa_state(recall)))
    return drifts


def _judge(entry: LedgerEntry, dvsa: str | None) -> Drift | None:
    def drift(kind: Kind) -> Drift:
        return Drift(entry.vin, entry.manufacturer_campaign_reference, kind, entry.state, dvsa or ABSENT)

    if dvsa is None:
        return None if entry.state == "deleted" else drift("missing_at_dvsa")
    return None if dvsa == entry.state else drift("status_differs")


def repair(drift: Drift, entry: LedgerEntry | None, answer: Answer, *, run: str, today: dt.date) -> Repair:
    """What brings DVSA (or, for an unknown campaign, the ledger) in line; ``run`` names the sweep."""
    if drift.kind == "unknown_to_ledger":
        return Repair(drift, record=answer)
    assert entry is not None  # the other kinds come from a ledger entry
    if drift.ledger_says == "deleted":
        return Repair(drift, not_repaired="the ledger says deleted; a sweep never deletes")
    fix = _fix(entry, run, today)
    if drift.kind == "missing_at_dvsa":
        create = _create(entry, run)
        if create is None:
            return Repair(drift, not_repaired="the ledger holds no campaign start date")
        if entry.state == "open":
            return Repair(drift, commands=(create,))  # a create opens it
        if fix is None:
            return Repair(drift, not_repaired="the ledger holds no rectification date")
        return Repair(drift, commands=(create, fix))
    if fix is None:
        return Repair(drift, not_repaired="the ledger holds no rectification date")
    return Repair(drift, commands=(fix,))


def _create(entry: LedgerEntry, run: str) -> CreateCommand | None:
    if entry.recall_campaign_start_date is None:
        return None
    return CreateCommand(
        message_id=_repair_id(run, "create", entry),
        vin=entry.vin,
        manufacturer_campaign_reference=entry.manufacturer_campaign_reference,
        dvsa_campaign_reference=entry.dvsa_campaign_reference,
        recall_campaign_start_date=entry.recall_campaign_start_date,
    )


def _fix(entry: LedgerEntry, run: str, today: dt.date) -> FixCommand | None:
    """The fix that puts DVSA in the ledger's status: FIXED with the ledger's date, or a re-open.

    DVSA's PUT wants a date even to re-open; today's is one it accepts, and the ledger keeps none.
    """
    status: RepairStatus
    if entry.state == "open":
        date, status = today, "NOT_FIXED"
    elif entry.rectification_date is not None:
        date, status = entry.rectification_date, "FIXED"
    else:
        return None
    return FixCommand(
        message_id=_repair_id(run, f"fix-{status}", entry),
        vin=entry.vin,
        manufacturer_campaign_reference=entry.manufacturer_campaign_reference,
        rectification_date=date,
        repair_status=status,
    )


def _repair_id(run: str, what: str, entry: LedgerEntry) -> str:
    """The same sweep's repair of the same campaign is the same message: publishing it again is safe."""
    return content_id(f"reconcile|{run}|{what}|{entry.vin}|{entry.manufacturer_campaign_reference}")


def check_mass_repair(vins_to_repair: int, swept: int, max_share: float) -> None:
    """Refuse repairs that touch more than ``max_share`` of the vehicles swept: a ledger gone wrong
    (an old backup restored, the wrong database) must not spray DVSA."""
    share = vins_to_repair / swept if swept else 0.0
    if share > max_share:
        raise MassRepairRefused(
            f"repairs would touch {vins_to_repair} of {swept} vehicles swept ({share:.1%}, more than "
            f"the {max_share:.1%} allowed by --max-repair-share): is the ledger the right one? "
            "Use --allow-mass-repair if it is."
        )
