"""Historic import and daily snapshot sync, end to end: CSV file -> RabbitMQ -> worker -> sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel

from recalls.producers.config import publisher_config
from recalls.producers.importer import Importer, ImportProgress
from recalls.producers.publisher import Publisher
from recalls.producers.sync import MassFixRefused, check_mass_fix, plan_sync, run_sync
from recalls.shared.settings import Settings
from recalls.shared.store.batches import Batches
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from tests.integration.conftest import Events, Sandbox, running_worker, worker_env
from tests.support.commands import vin
from tests.support.csv_files import good_row, write_csv

BAD_ROWS = [
    ["NOT-A-VIN", "CAMP1", "", "2025-01-01"],  # vin
    [vin(900), "CAMP 1", "", "2025-01-01"],  # manufacturer reference: a space
    [vin(901), "CAMP1", "R/25/1", "2025-01-01"],  # dvsa reference
    [vin(902), "CAMP1", "", "yesterday"],  # date
    [vin(903), "CAMP1"],  # columns
]


@contextlib.asynccontextmanager
async def importer(settings: Settings, **options: int) -> AsyncIterator[Importer]:
    async with Database.connect(settings) as db, Publisher.connect(publisher_config(settings)) as publisher:
        yield Importer(publisher, Ledger(db), Batches(db), **options)  # type: ignore[arg-type]


def open_recalls(recalls: list[dict[str, object]]) -> set[tuple[object, object]]:
    return {(r["vin"], r["manufacturerCampaignReference"]) for r in recalls if r["repairStatus"] != "FIXED"}


async def test_import_publishes_good_rows_once_and_reports_bad_ones(
    tmp_path: Path, sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    good = [good_row(n) for n in range(40)]
    rows = good[:20] + BAD_ROWS + good[20:] + good[5:10]  # five duplicates
    source = write_csv(tmp_path / "historic.csv", rows)
    async with running_worker(settings):
        async with importer(settings, chunk_rows=16) as running:
            progress = await running.run(source)
        assert (progress.rows_read, progress.published, progress.rejected) == (50, 40, 5)
        assert progress.duplicates == 5
        await events.wait_for(40)
    assert open_recalls(await sandbox.recalls()) == {(row[0], "CAMP1") for row in good}
    with (tmp_path / "historic.csv.rejects.csv").open() as file:
        report = list(csv.DictReader(file))
    assert [(r["row"], r["field"]) for r in report] == [
        ("22", "vin"),
        ("23", "manufacturer_campaign_reference"),
        ("24", "dvsa_campaign_reference"),
        ("25", "recall_campaign_start_date"),
        ("26", "row"),
    ]
    async with importer(settings) as running:
        again = await running.run(source)
    assert again.published == 0  # the journal knows them all (and the ledger, once recorded)


async def test_an_interrupted_import_continues_without_duplicates(
    tmp_path: Path, sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    source = write_csv(tmp_path / "historic.csv", [good_row(n) for n in range(100)], header=False)
    stop = asyncio.Event()

    def stop_after_first_chunk(progress: ImportProgress) -> None:
        if progress.published:
            stop.set()  # as Ctrl-C does

    async with importer(settings, chunk_rows=10) as running:
        running.on_progress = stop_after_first_chunk
        first = await running.run(source, stop)
    assert first.stopped and 0 < first.published < 100
    async with importer(settings, chunk_rows=10) as running:
        second = await running.run(source)  # no worker yet: only the journal knows what was sent
    assert first.published + second.published == 100
    async with running_worker(settings):
        await events.wait_for(100)
    assert len(open_recalls(await sandbox.recalls())) == 100
    assert {event.result for event in events.received} == {"applied"}  # no copy met a 409


async def test_sync_creates_new_rows_and_fixes_missing_ones(
    tmp_path: Path, sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    day1 = write_csv(tmp_path / "snapshot-2026-11-20.csv", [good_row(n) for n in range(10)])
    day2_rows = [good_row(n) for n in range(2, 10)] + [good_row(n) for n in range(10, 13)]
    day2 = write_csv(tmp_path / "snapshot-2026-11-21.csv", day2_rows)
    async with running_worker(settings) as worker, importer(settings) as running:
        assert worker.recorder is not None
        plan1 = await plan_sync(running.ledger, day1, dt.date(2026, 11, 20))
        assert (plan1.creates, len(plan1.fixes)) == (10, 0)
        await run_sync(running, plan1)
        await worker.recorder.recorded(10)
        plan2 = await plan_sync(running.ledger, day2, dt.date(2026, 11, 21))
        assert (plan2.creates, plan2.unchanged, len(plan2.fixes)) == (3, 8, 2)
        progress = await run_sync(running, plan2)
        assert progress.published == 5
        await events.wait_for(15)
        replay = await run_sync(running, await plan_sync(running.ledger, day2, dt.date(2026, 11, 21)))
        assert replay.published == 0
    recalls = await sandbox.recalls()
    assert open_recalls(recalls) == {(row[0], "CAMP1") for row in day2_rows}
    fixed = {(r["vin"], r.get("rectificationDate")) for r in recalls if r["repairStatus"] == "FIXED"}
    assert fixed == {(vin(0), "2026-11-21"), (vin(1), "2026-11-21")}


async def test_a_snapshot_that_would_fix_too_many_is_refused(
    tmp_path: Path, sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    full = write_csv(tmp_path / "full.csv", [good_row(n) for n in range(10)])
    truncated = write_csv(tmp_path / "truncated.csv", [good_row(n) for n in range(5)])
    async with running_worker(settings) as worker, importer(settings) as running:
        assert worker.recorder is not None
        await running.run(full)
        await worker.recorder.recorded(10)
        plan = await plan_sync(running.ledger, truncated, dt.date(2026, 11, 21))
        with pytest.raises(MassFixRefused, match=r"5 of 10 open recalls fixed \(50%"):
            check_mass_fix(plan, 0.2)
    # The command line refuses it too, publishing nothing.
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from recalls.cli.main import main; main()",
        "sync",
        str(truncated),
        env=worker_env(settings, RECALLS_SQLITE_PATH=str(settings.sqlite_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await cli.communicate()
    assert cli.returncode == 2, out.decode() + err.decode()
    assert "more than the 20% allowed" in err.decode() and "--allow-mass-fix" in err.decode()
    assert len(open_recalls(await sandbox.recalls())) == 10
