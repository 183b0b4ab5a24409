"""Batch checks in the store, on SQLite and the real PostgreSQL: started whole, within a gate.

A batch check is started with its whole journal, or, when its admission refuses, not at all.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from shared.contracts import Recall
from shared.store.api_keys import ApiKeys
from shared.store.batches import Admission, Batches, KeyUsage
from shared.store.database import Database
from shared.store.tables import batch_commands, batches
from tests.support.commands import vin

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
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
        [vin(1), vin(2), vin(3)], cached, owner=key, webhook_url=None, admission=admitting(seen)
    )
    whole = await batches_.start_check(
        [vin(1)], cached, owner=key, webhook_url=HOOK, admission=admitting(seen)
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
        await Batches(db).start_check([vin(1)], {}, owner=await owner(db), webhook_url=None, admission=gate)
    async with db.reading() as connection:
        for table in (batches, batch_commands):
            assert (await connection.execute(select(func.count()).select_from(table))).scalar_one() == 0
