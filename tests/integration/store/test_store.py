"""The store on both of its databases (see this folder's conftest): ledger, batches, checks and migrations."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from recalls.shared.contracts import Command, CreateCommand, FixCommand, OutcomeEvent, Recall
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.batches import Batches
from recalls.shared.store.database import Database, StoreError, database_url
from recalls.shared.store.ledger import Ledger
from recalls.shared.store.migrations import MIGRATIONS
from recalls.shared.store.tables import metadata
from tests.support.commands import vin

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
START = dt.date(2025, 9, 1)
VIN = "SALGA2EV5HA123456"
ANSWERS = {"create": 201, "fix": 200, "delete": 204, "get": 200}  # DVSA's to each verb done


def event(verb: str, at: int, *, result: str = "applied", **fields: Any) -> OutcomeEvent:
    """An outcome event completed ``at`` minutes after T0."""
    values: dict[str, Any] = {
        "message_id": uuid.uuid4().hex,
        "verb": verb,
        "vin": VIN.lower(),
        "manufacturer_campaign_reference": "RC-1",
        "result": result,
        "attempts": 1,
        "first_seen_at": T0,
        "completed_at": T0 + dt.timedelta(minutes=at),
        "dvsa_status": ANSWERS[verb],
        **fields,
    }
    return OutcomeEvent(**values)


def created(at: int, **fields: Any) -> OutcomeEvent:
    values: dict[str, Any] = {"dvsa_campaign_reference": "R/2025/101", "recall_campaign_start_date": START}
    return event("create", at, **{**values, **fields})


def fixed(at: int, **fields: Any) -> OutcomeEvent:
    values: dict[str, Any] = {"rectification_date": dt.date(2026, 1, 2), "repair_status": "FIXED", **fields}
    return event("fix", at, **values)


# --- the database --------------------------------------------------------------------------------------


async def test_migrate_twice_and_concurrently_is_a_no_op(db: Database, store_settings: Settings) -> None:
    others = [await Database.open(store_settings) for _ in range(3)]
    try:
        await asyncio.gather(*(other.migrate() for other in others))
    finally:
        await asyncio.gather(*(other.close() for other in others))
    await db.migrate()
    async with db.reading() as connection:
        versions = await connection.execute(text("SELECT version FROM schema_migrations"))
        assert list(versions.scalars()) == [migration.version for migration in MIGRATIONS]


async def test_the_migrated_schema_has_every_column_of_the_tables(db: Database) -> None:
    async with db.reading() as connection:
        columns = await connection.run_sync(
            lambda sync: {t: {c["name"] for c in inspect(sync).get_columns(t)} for t in metadata.tables}
        )
    assert columns == {name: set(table.columns.keys()) for name, table in metadata.tables.items()}


def test_urls_are_normalised_and_errors_hide_the_password() -> None:
    url = database_url(load_settings(database_url="postgres://app:s3cret-pw@db.example:5432/recalls"))
    assert url.drivername == "postgresql+asyncpg"
    assert url.password == "s3cret-pw"
    assert "s3cret-pw" not in str(url)
    sqlite_url = database_url(load_settings(sqlite_path=Path("/srv/recalls/recalls.db")))
    assert sqlite_url.render_as_string() == "sqlite+aiosqlite:////srv/recalls/recalls.db"
    for bad in ("mysql://app:s3cret-pw@db/recalls", "::not a url s3cret-pw"):
        with pytest.raises(StoreError) as caught:
            database_url(load_settings(database_url=bad))
        assert "s3cret-pw" not in str(caught.value)
        assert "RECALLS_DATABASE_URL" in str(caught.value)


# --- the ledger ----------------------------------------------------------------------------------------


async def test_create_fix_reopen_delete(db: Database) -> None:
    ledger = Ledger(db)
    opened = created(0)
    await ledger.apply(opened)
    [entry] = await ledger.for_vin(VIN)
    assert (entry.vin, entry.manufacturer_campaign_reference, entry.state) == (VIN, "RC-1", "open")
    assert (entry.dvsa_campaign_reference, entry.recall_campaign_start_date) == ("R/2025/101", START)
    assert (entry.last_message_id, entry.updated_at, entry.confirmed_at) == (opened.message_id, T0, None)

    await ledger.apply(fixed(1, result="already_applied"))
    [entry] = await ledger.for_vin(VIN.lower())
    assert (entry.state, entry.rectification_date) == ("fixed", dt.date(2026, 1, 2))
    assert entry.dvsa_campaign_reference == "R/2025/101"  # the fix named no DVSA reference: kept

    await ledger.apply(fixed(2, repair_status="NOT_FIXED"))
    [entry] = await ledger.for_vin(VIN)
    assert (entry.state, entry.rectification_date) == ("open", None)

    await ledger.apply(event("delete", 3))
    assert [e.state for e in await ledger.for_vin(VIN)] == ["deleted"]
    await ledger.apply(event("delete", 4, result="failed", manufacturer_campaign_reference="RC-2"))
    assert len(await ledger.for_vin(VIN)) == 1


async def test_an_outcome_dvsa_did_not_answer_changes_no_entry(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(1), event("delete", 2))
    # A create superseded by that delete, reported later without a call to DVSA: the recall stays deleted.
    await ledger.apply(created(3, result="already_applied", dvsa_status=None))
    [entry] = await ledger.for_vin(VIN)
    assert (entry.state, entry.updated_at) == ("deleted", T0 + dt.timedelta(minutes=2))


async def test_older_and_repeated_events_change_nothing(db: Database) -> None:
    ledger = Ledger(db)
    fix = fixed(5)
    await ledger.apply(fix)
    await ledger.apply(created(1))  # the create completed before the fix, arrived after it
    await ledger.apply(event("delete", 4))
    await ledger.apply(fix)
    [entry] = await ledger.for_vin(VIN)
    assert (entry.state, entry.last_message_id, entry.updated_at) == (
        "fixed",
        fix.message_id,
        T0 + dt.timedelta(minutes=5),
    )
    assert entry.recall_campaign_start_date is None  # only an applied create would have said


async def test_a_create_dvsa_already_held_makes_a_missing_entry_but_changes_none(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(1), fixed(2))
    # The create again (redelivered while the store could not be read): DVSA answers 409, a get confirms
    # the recall is there. Completed after the fix, it still says nothing of its state.
    await ledger.apply(created(3, result="already_applied", dvsa_status=409))
    [entry] = await ledger.for_vin(VIN)
    assert (entry.state, entry.updated_at) == ("fixed", minutes(2))

    await ledger.apply(created(4, result="already_applied", dvsa_status=409, vin="SALGA2EV5HA999999"))
    [made] = await ledger.for_vin("SALGA2EV5HA999999")
    assert made.state == "open"  # the ledger knew nothing of it: now it knows the recall exists


def minutes(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


async def test_a_delete_marks_before_sending_and_takes_back_what_dvsa_did_not_apply(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(1))
    [before] = await ledger.for_vin(VIN)
    marks = {"RC-1": before, "RC-2": None}  # RC-2: a recall the ledger has not heard of
    held, marked = await ledger.mark_deleting_before_sending(
        VIN, lambda entries: (entries, marks), message_id="d1", issued_at=minutes(2), at=minutes(3)
    )
    assert (held, marked) == ([before], marks)  # what the choice was given, read in the same transaction
    entries = await ledger.for_vin(VIN)
    assert [(e.manufacturer_campaign_reference, e.state, e.issued_at) for e in entries] == [
        ("RC-1", "deleting", minutes(2)),
        ("RC-2", "deleting", minutes(2)),
    ]
    await ledger.unmark_deleting(VIN, marks, message_id="d1")
    assert await ledger.for_vin(VIN) == [before]


async def test_a_delete_mark_leaves_what_changed_since_it_was_read(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(1))
    [before] = await ledger.for_vin(VIN)
    await ledger.apply(fixed(2))  # after the delete read the entry, before it marked it
    await ledger.mark_deleting_before_sending(
        VIN, lambda _: ([before], {"RC-1": before}), message_id="d1", issued_at=minutes(2), at=minutes(3)
    )
    [entry] = await ledger.for_vin(VIN)
    assert entry.state == "fixed"


async def test_taking_back_a_mark_leaves_a_newer_change(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(1))
    [before] = await ledger.for_vin(VIN)
    await ledger.mark_deleting_before_sending(
        VIN, lambda entries: (entries, {"RC-1": before}), message_id="d1", issued_at=minutes(2), at=minutes(3)
    )
    await ledger.apply(fixed(4))
    await ledger.unmark_deleting(VIN, {"RC-1": before}, message_id="d1")
    [entry] = await ledger.for_vin(VIN)
    assert (entry.state, entry.updated_at) == ("fixed", minutes(4))


async def test_fix_and_delete_by_dvsa_reference(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(0))
    await ledger.apply(fixed(1, manufacturer_campaign_reference=None, dvsa_campaign_reference="R/2025/101"))
    assert [e.state for e in await ledger.for_vin(VIN)] == ["fixed"]
    # No entry holds this DVSA reference: skipped, nothing invented.
    await ledger.apply(
        event("delete", 2, manufacturer_campaign_reference=None, dvsa_campaign_reference="R/2025/999")
    )
    assert [(e.manufacturer_campaign_reference, e.state) for e in await ledger.for_vin(VIN)] == [
        ("RC-1", "fixed")
    ]


async def test_a_get_confirms_each_recall_it_lists(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.apply(created(0))
    await ledger.apply(fixed(1))
    recalls = [
        Recall(
            manufacturer_campaign_reference="RC-1",
            dvsa_campaign_reference="R/2025/101",
            repair_status="NOT_FIXED",
        ),
        Recall(
            manufacturer_campaign_reference="RC-2",
            recall_campaign_start_date="2025-10-01",
            repair_status="FIXED",
        ),
    ]
    check = event("get", 2, manufacturer_campaign_reference=None, recalls=recalls)
    await ledger.apply(check)
    first, second = await ledger.for_vin(VIN)
    assert (first.state, first.rectification_date, first.confirmed_at) == ("open", None, check.completed_at)
    assert (second.manufacturer_campaign_reference, second.state) == ("RC-2", "fixed")
    assert second.recall_campaign_start_date == dt.date(2025, 10, 1)
    await ledger.apply(fixed(3, manufacturer_campaign_reference="RC-2"))
    [_, second] = await ledger.for_vin(VIN)
    assert second.confirmed_at == check.completed_at  # a fix is not a confirmation


async def test_a_group_of_events_in_one_call_lands_as_if_applied_in_time_order(db: Database) -> None:
    ledger = Ledger(db)
    other = "WAUZZZ8V000000042"
    group = [
        fixed(2),  # arrives first, completed after the create: both land, the fix on top
        created(1),
        fixed(3, manufacturer_campaign_reference=None, dvsa_campaign_reference="R/2025/101", vin=other),
        created(0, vin=other, manufacturer_campaign_reference="RC-5"),  # the fix above finds it by it
        event("delete", 4, manufacturer_campaign_reference="RC-7"),
        event("delete", 5, manufacturer_campaign_reference="RC-7"),  # the same entry twice in one go
        fixed(6, result="failed", manufacturer_campaign_reference="RC-8"),
    ]
    group[2], group[3] = group[3], group[2]  # the create of `other` comes before its fix by reference
    await ledger.apply(*group)

    first, deleted = await ledger.for_vin(VIN)
    assert (first.manufacturer_campaign_reference, first.state, first.recall_campaign_start_date) == (
        "RC-1",
        "fixed",
        START,
    )
    assert first.last_message_id == group[0].message_id
    assert (deleted.manufacturer_campaign_reference, deleted.state) == ("RC-7", "deleted")
    assert deleted.last_message_id == group[5].message_id
    [found] = await ledger.for_vin(other)
    assert (found.manufacturer_campaign_reference, found.state) == ("RC-5", "fixed")


async def test_states_open_recalls_and_count(db: Database) -> None:
    ledger = Ledger(db)
    vins = [vin(n) for n in range(1_205)]
    for n, each in enumerate(vins):
        await ledger.apply(created(n, vin=each, manufacturer_campaign_reference="RC-1"))
    await ledger.apply(fixed(5_000, vin=vins[3], manufacturer_campaign_reference="RC-1"))

    asked = [(each.lower(), "RC-1") for each in vins[:1_000]] + [
        (vins[0], "RC-9"),
        ("WAUZZZ8V999999999", "RC-1"),
    ]
    held = await ledger.states(asked)
    assert set(held) == set(asked[:1_000])
    assert held[(vins[3].lower(), "RC-1")] == "fixed"
    assert set(held.values()) == {"open", "fixed"}

    assert await ledger.count_open() == 1_204
    streamed = [(e.vin, e.manufacturer_campaign_reference) async for e in ledger.open_recalls()]
    assert streamed == [(each, "RC-1") for each in vins if each != vins[3]]


async def test_vehicles_come_in_order_a_page_at_a_time_each_once(db: Database) -> None:
    ledger = Ledger(db)
    vins = sorted(vin(n) for n in range(1_001))
    opened = [  # two campaigns each: a vehicle is one VIN however many entries it has
        created(n, vin=each, manufacturer_campaign_reference=reference)
        for n, each in enumerate(vins)
        for reference in ("RC-1", "RC-2")
    ]
    await ledger.apply(*opened)

    assert [page async for page in ledger.vin_pages()] == [vins[:1_000], vins[1_000:]]
    only = [vins[5].lower(), vins[999], "WAUZZZ8V999999999"]
    assert [page async for page in ledger.vin_pages(only=only)] == [[vins[5], vins[999]]]
    since = T0 + dt.timedelta(minutes=999)
    assert [page async for page in ledger.vin_pages(since=since)] == [vins[999:]]
    assert [page async for page in ledger.vin_pages(only=["WAUZZZ8V999999999"])] == []


# --- batches -------------------------------------------------------------------------------------------


def creates(first: int, count: int) -> list[Command]:
    return [
        CreateCommand(vin=vin(n), manufacturer_campaign_reference="RC-1", recall_campaign_start_date=START)
        for n in range(first, first + count)
    ]


def outcome(command: Command, result: str, at: int = 0, **fields: Any) -> OutcomeEvent:
    return event(command.verb, at, message_id=command.message_id, vin=command.vin, result=result, **fields)


async def test_claim_returns_new_and_left_over_commands_but_never_published_ones(db: Database) -> None:
    batches = Batches(db)
    interrupted = await batches.start("import", "fleet.csv")
    commands = creates(0, 6)
    assert await batches.claim(interrupted, commands[:4]) == commands[:4]
    await batches.published([c.message_id for c in commands[:2]])  # then the run died
    await batches.record(outcome(commands[3], "applied"))  # it was published: its outcome came

    rerun = await batches.start("import", "fleet.csv")
    due = [commands[2], commands[4], commands[5]]
    assert await batches.claim(rerun, [*commands, commands[5]]) == due
    assert await batches.claim(rerun, commands) == due  # still unpublished: still due
    await batches.published([c.message_id for c in due])
    assert await batches.claim(rerun, commands) == []

    first, second = await batches.status(interrupted), await batches.status(rerun)
    assert first is not None and second is not None
    assert (first.total, first.processed, second.total) == (3, 1, 3)


async def test_record_completes_the_batch_and_status_counts(db: Database) -> None:
    batches = Batches(db)
    batch = await batches.start("sync", None)
    commands = [
        *creates(100, 3),
        FixCommand(vin="WAUZZZ8V000000100", manufacturer_campaign_reference="RC-1", rectification_date=START),
    ]
    await batches.published([c.message_id for c in await batches.claim(batch, commands)])
    await batches.record(outcome(commands[0], "applied"))
    await batches.record(outcome(commands[1], "already_applied"))
    await batches.record(outcome(commands[2], "failed", reason="400 bad date"))
    await batches.record(outcome(commands[2], "applied"))  # a duplicate delivery: the first outcome stands
    await batches.record(event("create", 0))  # not a batch's command: ignored
    await batches.close_publishing(batch, rejected=2, skipped=1)

    status = await batches.status(batch)
    assert status is not None
    assert (status.kind, status.status, status.source) == ("sync", "running", None)
    counts = (status.total, status.processed, status.succeeded, status.already_applied, status.failed)
    assert counts == (4, 3, 1, 1, 1)
    assert (status.rejected, status.skipped) == (2, 1)
    assert status.failures == [
        {"message_id": commands[2].message_id, "vin": commands[2].vin, "reason": "400 bad date"}
    ]

    recalls = [Recall(manufacturer_campaign_reference="RC-1", repair_status="FIXED")]
    await batches.record(outcome(commands[3], "applied", recalls=recalls))
    status = await batches.status(batch)
    assert status is not None and status.status == "completed"
    results = {row["message_id"]: row async for row in batches.results(batch)}
    assert results[commands[2].message_id]["result"] == "failed"
    assert results[commands[3].message_id]["recalls"] == [
        {"manufacturer_campaign_reference": "RC-1", "repair_status": "FIXED"}
    ]
    assert await batches.status("no-such-batch") is None


async def test_outcomes_recorded_as_one_group_complete_the_batch(db: Database) -> None:
    batches = Batches(db)
    batch = await batches.start("import", None)
    commands = creates(300, 3)
    await batches.published([c.message_id for c in await batches.claim(batch, commands)])
    await batches.close_publishing(batch, rejected=0, skipped=0)
    await batches.record(
        outcome(commands[2], "failed", reason="400 bad date"),
        event("create", 0),  # not a batch's command
        outcome(commands[0], "applied"),
        outcome(commands[2], "applied"),  # a duplicate in the same group: the first outcome stands
        outcome(commands[1], "already_applied"),
    )
    status = await batches.status(batch)
    assert status is not None
    assert (status.status, status.succeeded, status.already_applied, status.failed) == ("completed", 1, 1, 1)


async def test_a_batch_with_every_outcome_in_completes_when_publishing_closes(db: Database) -> None:
    batches = Batches(db)
    empty, done, dropped = [await batches.start("import", None) for _ in range(3)]
    [command] = creates(200, 1)
    await batches.published([c.message_id for c in await batches.claim(done, [command])])
    await batches.record(outcome(command, "applied"))
    await batches.close_publishing(empty, rejected=0, skipped=0)
    await batches.close_publishing(done, rejected=0, skipped=0)
    await batches.close_publishing(dropped, rejected=0, skipped=0, cancelled=True)
    statuses = [await batches.status(batch) for batch in (empty, done, dropped)]
    assert [s.status if s else None for s in statuses] == ["completed", "completed", "cancelled"]
