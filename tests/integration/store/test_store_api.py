"""The store of the batch API on SQLite and the real PostgreSQL: API keys, the cache of checks, batch
checks (cached answers, hits, failure), their webhook calls, retention, and the migration that adds them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from recalls.shared.contracts import GetCommand, OutcomeEvent, Recall
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.batches import (
    CHECK_KIND,
    WEBHOOK_LEASE,
    Admission,
    Batches,
    WebhookDue,
    check_message_id,
)
from recalls.shared.store.checks import VinChecks
from recalls.shared.store.database import Database
from recalls.shared.store.migrations import MIGRATIONS, apply_migrations
from recalls.shared.store.tables import api_keys, batch_commands, batches, ledger, webhook_deliveries
from tests.support.commands import vin

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
HOOK = "https://hooks.example/recalls"
OPEN = Recall(
    manufacturer_campaign_reference="RC-1", dvsa_campaign_reference="R/2025/101", repair_status="NOT_FIXED"
)
DONE = Recall(manufacturer_campaign_reference="RC-2", repair_status="FIXED")
ADMIT_ALL = Admission(window=dt.timedelta(minutes=1), check=lambda usage: None)


class Clock:
    """A settable clock for the store's own times."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def answered(vin_: str, at: int, recalls: list[Recall] | None, **fields: Any) -> OutcomeEvent:
    """A get's outcome event completed ``at`` minutes after T0."""
    values: dict[str, Any] = {
        "message_id": uuid.uuid4().hex,
        "verb": "get",
        "vin": vin_,
        "result": "applied",
        "attempts": 1,
        "first_seen_at": T0,
        "completed_at": T0 + dt.timedelta(minutes=at),
        "recalls": recalls,
        **fields,
    }
    return OutcomeEvent(**values)


async def a_key(db: Database) -> str:
    return (await ApiKeys(db).create("fleet"))[0].id


async def check_of(
    batches_: Batches,
    owner: str,
    cached: dict[str, list[Recall]],
    *,
    to_check: Sequence[str] = (),
    webhook_url: str | None = None,
) -> str:
    """A batch check started as the batch API starts one: ``cached`` answered, ``to_check`` to publish."""
    return await batches_.start_check(
        [*cached, *to_check],
        cached,
        owner=owner,
        webhook_url=webhook_url,
        lease=dt.timedelta(seconds=15),
        admission=ADMIT_ALL,
    )


async def pending_calls(db: Database) -> list[dict[str, Any]]:
    async with db.reading() as connection:
        rows = await connection.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.batch_id))
        return [row._asdict() for row in rows]


# --- API keys ------------------------------------------------------------------------------------------


async def test_a_created_key_verifies_until_revoked_and_only_its_hash_is_kept(db: Database) -> None:
    keys = ApiKeys(db)
    record, key = await keys.create("  fleet ops  ")
    assert (record.name, record.revoked_at) == ("fleet ops", None)
    prefix, key_id, secret = key.split("_", 2)
    assert (prefix, key_id, len(key_id), len(secret)) == ("rk", record.id, 8, 32)
    assert await keys.verify(key) == record

    async with db.reading() as connection:
        [stored] = [row._asdict() for row in await connection.execute(select(api_keys))]
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(stored) and secret not in str(stored)

    assert await keys.revoke(record.id) is True
    assert await keys.verify(key) is None
    [revoked] = await keys.list()
    assert revoked.revoked_at is not None
    assert await keys.revoke(record.id) is True  # already revoked: still a key, first revocation kept
    assert (await keys.list())[0].revoked_at == revoked.revoked_at
    assert await keys.revoke("00000000") is False


async def test_wrong_unknown_and_malformed_keys_do_not_verify(db: Database) -> None:
    keys = ApiKeys(db)
    record, key = await keys.create("fleet")
    _, key_id, secret = key.split("_", 2)
    other_id = "0" * 8 if key_id != "0" * 8 else "1" * 8
    refused = [
        f"rk_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",  # wrong secret
        f"rk_{other_id}_{secret}",  # unknown id
        "",
        "rk_",
        key + "x",
        key[:-1],
        key.upper(),
        f" {key}",
        f"rk_{key_id}{secret}",
        f"xk_{key_id}_{secret}",
        f"rk_{key_id}_{secret[:-1]}é",
    ]
    for presented in refused:
        assert await keys.verify(presented) is None, presented
    assert await keys.verify(key) == record


async def test_list_shows_every_key_by_name_and_never_a_key_or_hash(db: Database) -> None:
    keys = ApiKeys(db, clock=Clock())
    created = [await keys.create(name) for name in ("billing", "dealers", "fleet ops")]
    await keys.revoke(created[1][0].id)
    listed = await keys.list()
    assert sorted(k.name for k in listed) == ["billing", "dealers", "fleet ops"]
    assert {k.id: k.revoked_at is not None for k in listed} == {
        created[0][0].id: False,
        created[1][0].id: True,
        created[2][0].id: False,
    }
    shown = repr(listed)
    for _, key in created:
        assert key not in shown and hashlib.sha256(key.encode()).hexdigest() not in shown


async def test_a_key_has_its_scopes_and_a_webhook_secret_of_its_own(db: Database) -> None:
    keys = ApiKeys(db)
    batch, _ = await keys.create("dealers")
    ops, _ = await keys.create("operators", scopes=("ops", "batch"))
    assert (batch.scopes, ops.scopes) == (("batch",), ("batch", "ops"))
    secrets = [await keys.webhook_secret(record.id) for record in (batch, ops)]
    assert all(s is not None and s.startswith("whsec_") and len(s) >= 32 + 6 for s in secrets)
    assert secrets[0] != secrets[1]
    rotated = await keys.rotate_webhook_secret(batch.id)
    assert rotated not in (None, secrets[0]) and await keys.webhook_secret(batch.id) == rotated
    assert await keys.rotate_webhook_secret("00000000") is None
    assert await keys.webhook_secret("00000000") is None
    assert "whsec_" not in repr(await keys.list())
    with pytest.raises(ValueError, match=r"^scopes: must be one or more of batch, ops$"):
        await keys.create("admins", scopes=("admin",))


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
async def test_a_key_needs_a_name_of_1_to_100_characters(db: Database, name: str) -> None:
    with pytest.raises(ValueError, match=r"^name: must be 1 to 100 characters$"):
        await ApiKeys(db).create(name)
    assert await ApiKeys(db).list() == []


# --- the cache of checks -------------------------------------------------------------------------------


async def test_the_cache_keeps_the_newest_whole_answer_per_vehicle(db: Database) -> None:
    checks = VinChecks(db)
    await checks.remember(answered(vin(1).lower(), 10, [OPEN]))
    await checks.remember(answered(vin(1), 5, []))  # older, arrived later: loses
    await checks.remember(
        answered(vin(2), 1, [DONE]),
        answered(vin(2), 3, [OPEN, DONE]),  # newer, in the same group: wins
        answered(vin(2), 2, []),
        answered(vin(3), 0, []),  # no recall is an answer too
    )
    ignored = [
        answered(vin(4), 0, None, result="failed", reason="DVSA 500"),
        answered(vin(4), 0, [OPEN], manufacturer_campaign_reference="RC-1"),  # one campaign only
        answered(vin(4), 0, [OPEN], dvsa_campaign_reference="R/2025/101"),
        OutcomeEvent(
            message_id="m-5",
            verb="create",
            vin=vin(4),
            manufacturer_campaign_reference="RC-1",
            result="applied",
            attempts=1,
            first_seen_at=T0,
            completed_at=T0,
        ),
        answered(vin(1), 20, [DONE], result="failed"),
    ]
    await checks.remember(*ignored)
    await checks.remember()

    everything = await checks.fresh([vin(1), vin(2), vin(3), vin(4)], T0)
    assert everything == {vin(1): [OPEN], vin(2): [OPEN, DONE], vin(3): []}
    # Only answers given at or after `since`, keyed by the VIN as asked.
    assert await checks.fresh([vin(1).lower(), vin(2), vin(3)], T0 + dt.timedelta(minutes=3)) == {
        vin(1).lower(): [OPEN],
        vin(2): [OPEN, DONE],
    }
    assert await checks.fresh([], T0) == {}


async def test_the_cache_looks_up_more_vehicles_than_one_query_takes(db: Database) -> None:
    checks = VinChecks(db)
    await checks.remember(*(answered(vin(n), n % 3, [OPEN] if n % 2 else []) for n in range(1_205)))
    found = await checks.fresh([vin(n) for n in range(1_300)], T0 + dt.timedelta(minutes=1))
    assert found == {vin(n): [OPEN] if n % 2 else [] for n in range(1_205) if n % 3}


# --- batch checks --------------------------------------------------------------------------------------


async def test_a_batch_served_wholly_from_the_cache_completes_with_its_answers(db: Database) -> None:
    batches_ = Batches(db)
    owner = await a_key(db)
    batch = await check_of(batches_, owner, {vin(1): [OPEN, DONE], vin(2): [DONE], vin(3): []})

    status = await batches_.status(batch)
    assert status is not None
    assert (status.status, status.owner, status.webhook_url, status.error_message) == (
        "completed",
        owner,
        None,
        None,
    )
    assert (status.total, status.processed, status.succeeded, status.failed, status.hits) == (3, 3, 3, 0, 1)
    assert status.completed_at is not None
    results = {row["vin"]: row async for row in batches_.results(batch)}
    assert {v: (r["verb"], r["result"], r["reason"], r["has_recalls"]) for v, r in results.items()} == {
        vin(1): ("get", "applied", "cached", True),
        vin(2): ("get", "applied", "cached", False),
        vin(3): ("get", "applied", "cached", False),
    }
    assert results[vin(1)]["recalls"] == [
        {
            "manufacturer_campaign_reference": "RC-1",
            "dvsa_campaign_reference": "R/2025/101",
            "repair_status": "NOT_FIXED",
        },
        {"manufacturer_campaign_reference": "RC-2", "repair_status": "FIXED"},
    ]
    for row in results.values():
        assert row["message_id"] == check_message_id(batch, row["vin"])
    assert await pending_calls(db) == []  # no webhook URL: no call


async def test_cached_and_checked_answers_count_together_and_hits_follow_open_recalls(db: Database) -> None:
    batches_ = Batches(db)
    to_check = [vin(2), vin(3), vin(4)]
    batch = await check_of(batches_, await a_key(db), {vin(1): [DONE]}, to_check=to_check, webhook_url=HOOK)
    commands = await batches_.unpublished_checks(batch, 10)
    assert sorted(c.vin for c in commands) == to_check
    await batches_.published([c.message_id for c in commands])
    await batches_.close_publishing(batch, rejected=0, skipped=0)
    assert (await pending_calls(db)) == []  # still running
    await batches_.record(
        answered(vin(2), 1, [OPEN], message_id=check_message_id(batch, vin(2))),
        answered(vin(3), 1, [], message_id=check_message_id(batch, vin(3))),
    )
    status = await batches_.status(batch)
    assert status is not None
    assert (status.status, status.processed, status.hits, status.completed_at) == ("running", 3, 1, None)

    await batches_.record(
        answered(vin(4), 2, None, result="failed", reason="400", message_id=check_message_id(batch, vin(4)))
    )
    status = await batches_.status(batch)
    assert status is not None
    assert (status.status, status.total, status.succeeded, status.failed, status.hits) == (
        "completed",
        4,
        3,
        1,
        1,
    )
    has_recalls = {row["vin"]: row["has_recalls"] async for row in batches_.results(batch)}
    assert has_recalls == {vin(1): False, vin(2): True, vin(3): False, vin(4): None}
    [call] = await pending_calls(db)
    assert (call["batch_id"], call["url"], call["attempts"], call["delivered_at"]) == (batch, HOOK, 0, None)
    assert call["next_attempt_at"] == status.completed_at


async def test_a_batch_with_a_webhook_owes_exactly_one_call_when_it_completes(db: Database) -> None:
    clock = Clock()
    batches_ = Batches(db, clock=clock)
    hooked, plain = (
        await batches_.start(CHECK_KIND, None, webhook_url=HOOK),
        await batches_.start("import", None),
    )
    for batch in (hooked, plain):
        command = GetCommand(vin=vin(7), message_id=check_message_id(batch, vin(7)))
        await batches_.published([c.message_id for c in await batches_.claim(batch, [command])])
        await batches_.close_publishing(batch, rejected=0, skipped=0)
        outcome = answered(vin(7), 0, [OPEN], message_id=command.message_id)
        await batches_.record(outcome)
        clock.advance(seconds=1)
        await batches_.record(outcome)  # delivered twice: nothing more
        await batches_.close_publishing(batch, rejected=0, skipped=0)  # closed twice: nothing more
    assert [(c["batch_id"], c["next_attempt_at"]) for c in await pending_calls(db)] == [(hooked, T0)]
    assert await batches_.due_webhooks(T0, 10) == [WebhookDue(hooked, HOOK, 0)]


async def test_due_webhooks_are_leased_retried_then_delivered_or_given_up(db: Database) -> None:
    clock = Clock()
    batches_ = Batches(db, clock=clock)
    owner = await a_key(db)
    ids = []
    for n in range(3):  # they end a minute apart
        ids.append(await check_of(batches_, owner, {vin(n): []}, webhook_url=f"{HOOK}/{n}"))
        clock.advance(minutes=1)
    first, second, third = ids
    minute = dt.timedelta(minutes=1)
    assert await batches_.due_webhooks(T0 - dt.timedelta(seconds=1), 10) == []
    assert await batches_.due_webhooks(T0 + minute, 1) == [WebhookDue(first, f"{HOOK}/0", 0)]  # oldest first
    assert await batches_.due_webhooks(T0 + minute, 10) == [
        WebhookDue(second, f"{HOOK}/1", 0)
    ]  # first: leased
    now = T0 + 2 * minute
    assert await batches_.due_webhooks(now, 10) == [WebhookDue(third, f"{HOOK}/2", 0)]
    assert await batches_.due_webhooks(now, 10) == []
    # A sender that died holding its calls: they are handed out again when the lease ends.
    again = await batches_.due_webhooks(now + WEBHOOK_LEASE, 10)
    assert sorted(call.batch_id for call in again) == sorted(ids)

    retry_at = now + dt.timedelta(seconds=10)
    await batches_.webhook_failed(first, "HTTP 500 from the receiver", retry_at)
    await batches_.webhook_failed(second, "connection refused", retry_at + minute)
    await batches_.webhook_delivered(third, now)
    assert await batches_.due_webhooks(retry_at - dt.timedelta(seconds=1), 10) == []
    assert await batches_.due_webhooks(retry_at, 10) == [WebhookDue(first, f"{HOOK}/0", 1)]
    await batches_.webhook_delivered(first, retry_at)
    assert await batches_.due_webhooks(retry_at + minute, 10) == [WebhookDue(second, f"{HOOK}/1", 1)]
    await batches_.webhook_failed(second, "x" * 5000, None)  # given up
    await batches_.webhook_delivered(second, retry_at)  # too late: it stays given up
    await batches_.webhook_failed(third, "late", retry_at)  # delivered already: stays delivered
    assert await batches_.due_webhooks(now + dt.timedelta(days=365), 10) == []

    calls = {c["batch_id"]: c for c in await pending_calls(db)}
    assert (calls[first]["attempts"], calls[first]["delivered_at"]) == (2, retry_at)
    assert (calls[second]["attempts"], calls[second]["gave_up"], calls[second]["delivered_at"]) == (
        2,
        True,
        None,
    )
    assert calls[second]["last_error"] == "x" * 1000  # kept, cut short
    assert (calls[third]["attempts"], calls[third]["delivered_at"], calls[third]["last_error"]) == (
        1,
        now,
        None,
    )


async def test_two_senders_never_take_the_same_call(db: Database) -> None:
    batches_ = Batches(db, clock=Clock())
    owner = await a_key(db)
    for n in range(6):
        await check_of(batches_, owner, {vin(n): []}, webhook_url=HOOK)
    taken = await asyncio.gather(*(batches_.due_webhooks(T0, 4) for _ in range(3)))
    handed = [call.batch_id for calls in taken for call in calls]
    assert len(handed) == len(set(handed)) == 6


async def test_a_failed_batch_says_why_and_calls_its_webhook(db: Database) -> None:
    clock = Clock()
    batches_ = Batches(db, clock=clock)
    failing, done = [await batches_.start(CHECK_KIND, None, webhook_url=HOOK) for _ in range(2)]
    await batches_.close_publishing(done, rejected=0, skipped=0)  # nothing to check: completed
    clock.advance(minutes=1)
    await batches_.fail(failing, "publishing: the broker is unreachable")
    await batches_.fail(done, "too late")
    failed, completed = await batches_.status(failing), await batches_.status(done)
    assert failed is not None and completed is not None
    assert (failed.status, failed.error_message, failed.completed_at) == (
        "failed",
        "publishing: the broker is unreachable",
        T0 + dt.timedelta(minutes=1),
    )
    assert (completed.status, completed.error_message, completed.completed_at) == ("completed", None, T0)
    assert sorted(
        c.batch_id for c in await batches_.due_webhooks(T0 + dt.timedelta(minutes=1), 10)
    ) == sorted([failing, done])


async def test_purge_removes_old_batch_checks_with_their_rows_only(db: Database) -> None:
    clock = Clock()
    batches_ = Batches(db, clock=clock)
    owner = await a_key(db)

    async def checked() -> str:
        return await check_of(batches_, owner, {vin(n): [OPEN] for n in range(3)}, webhook_url=HOOK)

    async def imported() -> str:
        batch = await batches_.start("import", None, webhook_url=HOOK)
        commands = [GetCommand(vin=vin(n)) for n in range(3)]
        await batches_.published([c.message_id for c in await batches_.claim(batch, commands)])
        await batches_.close_publishing(batch, rejected=0, skipped=0)
        await batches_.record(*(answered(c.vin, 0, [OPEN], message_id=c.message_id) for c in commands))
        return batch

    old, old_import = await checked(), await imported()
    clock.advance(days=30)
    recent = await checked()
    cutoff = T0 + dt.timedelta(days=1)

    assert await batches_.purge(cutoff) == 1
    assert await batches_.status(old) is None
    async with db.reading() as connection:
        left = await connection.execute(
            select(batch_commands.c.batch_id, func.count()).group_by(batch_commands.c.batch_id)
        )
        assert dict(left.all()) == {old_import: 3, recent: 3}
    assert {c["batch_id"] for c in await pending_calls(db)} == {old_import, recent}
    recent_status = await batches_.status(recent)
    assert recent_status is not None and (recent_status.total, recent_status.status) == (3, "completed")

    assert await batches_.purge(cutoff) == 0
    assert await batches_.purge(cutoff, kinds=["import"]) == 1
    assert await batches_.status(old_import) is None


# --- the migration -------------------------------------------------------------------------------------


async def test_a_version_1_database_migrates_and_keeps_its_data(store_settings: Settings) -> None:
    database = await Database.open(store_settings)
    try:
        async with database.writing() as connection:
            assert await apply_migrations(connection, MIGRATIONS[:1]) == [1]
            # Only the columns of version 1 are named.
            times = {"created_at": T0, "updated_at": T0}
            await connection.execute(
                batches.insert().values(
                    id="b1",
                    kind="import",
                    status="completed",
                    source="fleet.csv",
                    rejected=2,
                    skipped=1,
                    **times,
                )
            )
            await connection.execute(
                batch_commands.insert().values(
                    message_id="m1",
                    batch_id="b1",
                    verb="create",
                    vin=vin(1),
                    published=True,
                    result="applied",
                    completed_at=T0,
                )
            )
            await connection.execute(
                ledger.insert().values(
                    vin=vin(1),
                    manufacturer_campaign_reference="RC-1",
                    state="open",
                    last_message_id="m1",
                    updated_at=T0,
                )
            )
        await database.migrate()
        async with database.reading() as connection:
            versions = await connection.execute(
                text("SELECT version FROM schema_migrations ORDER BY version")
            )
            assert list(versions.scalars()) == [m.version for m in MIGRATIONS] == [1, 2, 3, 4, 5, 6, 7]
            assert (await connection.execute(select(ledger.c.vin, ledger.c.state))).all() == [
                (vin(1), "open")
            ]
            [row] = (await connection.execute(select(batches))).all()
            assert (row.kind, row.webhook_url, row.owner, row.completed_at, row.error_message) == (
                "import",
                None,
                None,
                None,
                None,
            )

        status = await Batches(database).status("b1")
        assert status is not None
        assert (
            status.status,
            status.source,
            status.total,
            status.succeeded,
            status.rejected,
            status.hits,
        ) == (
            "completed",
            "fleet.csv",
            1,
            1,
            2,
            0,
        )
        assert [r["has_recalls"] async for r in Batches(database).results("b1")] == [None]
        # The new tables work on the migrated database.
        await ApiKeys(database).create("after the migration")
        await VinChecks(database).remember(answered(vin(1), 0, []))
        assert await VinChecks(database).fresh([vin(1)], T0) == {vin(1): []}
    finally:
        await database.close()


async def test_the_ledger_index_built_by_hand_beforehand_is_kept_by_the_migration(
    store_settings: Settings,
) -> None:
    """docs/operations.md: on a large ledger, build version 7's index without holding writes, then migrate."""
    database = await Database.open(store_settings)
    try:
        async with database.writing() as connection:
            await apply_migrations(connection, tuple(m for m in MIGRATIONS if m.version < 7))
        by_hand = "CREATE INDEX {} ledger_by_change ON ledger (updated_at, vin)"
        async with database.engine.connect() as connection:  # CONCURRENTLY runs outside a transaction
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            concurrently = "CONCURRENTLY" if database.dialect == "postgresql" else ""
            await autocommit.execute(text(by_hand.format(concurrently)))
        assert 7 in await database.migrate()
        async with database.reading() as connection:
            indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("ledger"))
        assert [i["column_names"] for i in indexes if i["name"] == "ledger_by_change"] == [
            ["updated_at", "vin"]
        ]
    finally:
        await database.close()
