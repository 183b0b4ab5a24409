"""Batch checks in the store, on SQLite and the real PostgreSQL: started whole within a gate, leased.

A batch check is started with its whole journal, or, when its admission refuses, not at all; its
publishing is leased, and once the lease has run out one caller, and only one of many asking at once
through two engines (as two API processes would), takes the batch over.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from recalls.shared.contracts import Recall
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.batches import Admission, Batches, KeyUsage
from recalls.shared.store.database import Database
from recalls.shared.store.tables import batch_commands, batches
from tests.support.commands import vin

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=15)
HOOK = "https://hooks.example/recalls"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def admitting(seen: list[KeyUsage]) -> Admission:
    return Admission(window=dt.timedelta(minutes=1), check=seen.append)


async def owner(db: Database) -> str:
    record, _ = await ApiKeys(db).create("fleet team")
    return record.id


async def test_a_batch_check_is_journaled_whole_and_one_served_from_the_cache_completes(db: Database) -> None:
    batches_ = Batches(db, clock=Clock())
    key = await owner(db)
    seen: list[KeyUsage] = []
    cached = {vin(1): [Recall(manufacturer_campaign_reference="RC-1", repair_status="NOT_FIXED")]}
    mixed = await batches_.start_check(
        [vin(1), vin(2), vin(3)], cached, owner=key, webhook_url=None, lease=LEASE, admission=admitting(seen)
    )
    whole = await batches_.start_check(
        [vin(1)], cached, owner=key, webhook_url=HOOK, lease=LEASE, admission=admitting(seen)
    )
    assert seen == [KeyUsage(at=T0, started=(), open=0), KeyUsage(at=T0, started=(T0,), open=1)]

    status = await batches_.status(mixed)
    assert status is not None and (status.status, status.total, status.processed) == ("publishing", 1, 1)
    waiting = select(batch_commands.c.vin).where(
        batch_commands.c.batch_id == mixed, batch_commands.c.published.is_(False)
    )
    async with db.reading() as connection:
        assert sorted((await connection.execute(waiting)).scalars()) == [vin(2), vin(3)]
    done = await batches_.status(whole)
    assert done is not None and (done.status, done.processed, done.hits) == ("completed", 1, 1)
    assert await batches_.usage(key, dt.timedelta(seconds=1)) == KeyUsage(at=T0, started=(T0, T0), open=1)


async def test_a_refused_admission_leaves_nothing_behind(db: Database) -> None:
    def refuse(_usage: KeyUsage) -> None:
        raise LookupError("over quota")

    gate = Admission(window=dt.timedelta(minutes=1), check=refuse)
    with pytest.raises(LookupError):
        await Batches(db).start_check(
            [vin(1)], {}, owner=await owner(db), webhook_url=None, lease=LEASE, admission=gate
        )
    async with db.reading() as connection:
        for table in (batches, batch_commands):
            assert (await connection.execute(select(func.count()).select_from(table))).scalar_one() == 0


async def test_a_lapsed_lease_goes_to_one_of_many_callers(db: Database, store_settings: Settings) -> None:
    clock = Clock()
    batches_ = Batches(db, clock=clock)
    publishing = await batches_.start_check(
        [vin(1)], {}, owner=await owner(db), webhook_url=None, lease=LEASE, admission=admitting([])
    )
    clock.now = T0 + LEASE - dt.timedelta(seconds=1)
    assert await batches_.take_over(LEASE) == []  # its publisher may still be at work
    await batches_.renew(publishing, LEASE)
    clock.now = T0 + LEASE + dt.timedelta(seconds=1)
    assert await batches_.take_over(LEASE) == []  # renewed: still at work

    clock.now += LEASE
    async with Database.connect(store_settings) as other:  # a second engine, as a second process has
        elsewhere = Batches(other, clock=clock)
        taken = await asyncio.gather(*(each.take_over(LEASE) for each in [batches_, elsewhere] * 4))
    assert sorted(taken) == [[]] * 7 + [[publishing]]
    assert await batches_.take_over(LEASE) == []  # leased anew to the one that took it
