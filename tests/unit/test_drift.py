"""A sweep's verdicts and repairs, decided purely from the ledger's entries and DVSA's answer."""

from __future__ import annotations

import datetime as dt

import pytest

from recalls.producers.drift import (
    Answer,
    Drift,
    MassRepairRefused,
    check_mass_repair,
    compare,
    repair,
)
from recalls.shared.contracts import CreateCommand, FixCommand, Recall
from recalls.shared.store.ledger import LedgerEntry, State

VIN = "WAUZZZF49HA036784"
BEFORE = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
ANSWERED = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
AFTER = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
START = dt.date(2026, 1, 5)
TODAY = dt.date(2026, 12, 7)


def entry(
    reference: str, state: State, *, updated: dt.datetime = BEFORE, rectified: dt.date | None = None
) -> LedgerEntry:
    return LedgerEntry(
        vin=VIN,
        manufacturer_campaign_reference=reference,
        dvsa_campaign_reference="R/2026/001",
        state=state,
        recall_campaign_start_date=START,
        rectification_date=rectified,
        last_message_id="m",
        updated_at=updated,
        confirmed_at=None,
        issued_at=updated,
    )


def held(*recalls: tuple[str, str]) -> Answer:
    """DVSA's answer: (reference, repair status) pairs."""
    return Answer(
        VIN,
        [Recall(manufacturer_campaign_reference=ref, repair_status=status) for ref, status in recalls],
        ANSWERED,
        "get-1",
    )


@pytest.mark.parametrize(
    ("entries", "answer", "expected"),
    [
        ([entry("A", "open")], held(("A", "NOT_FIXED")), []),
        ([entry("A", "fixed")], held(("A", "FIXED")), []),
        ([entry("A", "deleted")], held(), []),
        ([entry("A", "open")], held(), [("A", "missing_at_dvsa", "open", "absent")]),
        ([entry("A", "fixed")], held(), [("A", "missing_at_dvsa", "fixed", "absent")]),
        ([entry("A", "open")], held(("A", "FIXED")), [("A", "status_differs", "open", "fixed")]),
        ([entry("A", "fixed")], held(("A", "NOT_FIXED")), [("A", "status_differs", "fixed", "open")]),
        ([entry("A", "deleted")], held(("A", "NOT_FIXED")), [("A", "status_differs", "deleted", "open")]),
        (
            [entry("A", "open")],
            held(("A", "NOT_FIXED"), ("B", "FIXED")),
            [("B", "unknown_to_ledger", "absent", "fixed")],
        ),
        # Not judged: a delete in doubt, and an entry changed after DVSA answered.
        ([entry("A", "deleting")], held(("A", "NOT_FIXED")), []),
        ([entry("A", "open", updated=AFTER)], held(), []),
        ([entry("A", "open", updated=AFTER)], held(("A", "FIXED")), []),
    ],
)
def test_verdicts(
    entries: list[LedgerEntry], answer: Answer, expected: list[tuple[str, str, str, str]]
) -> None:
    assert compare(entries, answer) == [Drift(VIN, *row) for row in expected]  # type: ignore[arg-type]


def test_a_campaign_dvsa_lacks_is_created_again_and_fixed_if_the_ledger_holds_it_fixed() -> None:
    fixed = entry("A", "fixed", rectified=dt.date(2026, 3, 1))
    [drift] = compare([fixed], held())
    create, fix = repair(drift, fixed, held(), run="r1", today=TODAY).commands
    assert isinstance(create, CreateCommand) and isinstance(fix, FixCommand)
    assert (create.vin, create.manufacturer_campaign_reference) == (VIN, "A")
    assert (create.dvsa_campaign_reference, create.recall_campaign_start_date) == ("R/2026/001", START)
    assert (fix.repair_status, fix.rectification_date) == ("FIXED", dt.date(2026, 3, 1))
    again = repair(drift, fixed, held(), run="r1", today=TODAY).commands
    assert [c.message_id for c in again] == [create.message_id, fix.message_id]  # safe to re-publish


def test_an_open_campaign_dvsa_lacks_is_only_created_again() -> None:
    opened = entry("A", "open")
    [drift] = compare([opened], held())
    [create] = repair(drift, opened, held(), run="r1", today=TODAY).commands
    assert isinstance(create, CreateCommand)


def test_a_status_that_differs_is_put_back_either_way() -> None:
    opened = entry("A", "open")
    [drift] = compare([opened], held(("A", "FIXED")))
    [reopen] = repair(drift, opened, held(("A", "FIXED")), run="r1", today=TODAY).commands
    assert isinstance(reopen, FixCommand)
    assert (reopen.repair_status, reopen.rectification_date) == ("NOT_FIXED", TODAY)
    fixed = entry("A", "fixed", rectified=dt.date(2026, 3, 1))
    [drift] = compare([fixed], held(("A", "NOT_FIXED")))
    [fix] = repair(drift, fixed, held(("A", "NOT_FIXED")), run="r1", today=TODAY).commands
    assert isinstance(fix, FixCommand)
    assert (fix.repair_status, fix.rectification_date) == ("FIXED", dt.date(2026, 3, 1))


def test_what_would_need_a_guess_or_a_delete_is_reported_not_repaired() -> None:
    undated = entry("A", "fixed")
    [drift] = compare([undated], held(("A", "NOT_FIXED")))
    planned = repair(drift, undated, held(("A", "NOT_FIXED")), run="r1", today=TODAY)
    assert (planned.commands, planned.not_repaired) == ((), "the ledger holds no rectification date")
    deleted = entry("A", "deleted")
    [drift] = compare([deleted], held(("A", "NOT_FIXED")))
    planned = repair(drift, deleted, held(("A", "NOT_FIXED")), run="r1", today=TODAY)
    assert planned.commands == ()
    assert planned.not_repaired == "the ledger says deleted; a sweep never deletes"


def test_a_campaign_unknown_to_the_ledger_is_recorded_from_dvsas_answer() -> None:
    answer = held(("B", "FIXED"))
    [drift] = compare([], answer)
    planned = repair(drift, None, answer, run="r1", today=TODAY)
    assert (planned.commands, planned.record) == ((), answer)


@pytest.mark.parametrize(("to_repair", "swept", "refused"), [(5, 100, False), (6, 100, True), (0, 0, False)])
def test_mass_repairs_are_refused(to_repair: int, swept: int, refused: bool) -> None:
    if not refused:
        check_mass_repair(to_repair, swept, 0.05)
        return
    with pytest.raises(MassRepairRefused, match=r"6 of 100 vehicles swept \(6.0%.*--allow-mass-repair"):
        check_mass_repair(to_repair, swept, 0.05)
