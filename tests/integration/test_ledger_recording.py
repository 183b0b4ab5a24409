"""A running worker records every outcome in the ledger and its batch, and the CLI shows them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
from pathlib import Path

from aio_pika.abc import AbstractChannel
from click.testing import CliRunner, Result

from recalls.cli.main import cli
from recalls.shared.contracts import Command, CreateCommand, FixCommand
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.batches import Batches
from recalls.shared.store.database import Database
from recalls.workers.runtime import Worker
from tests.integration.conftest import Events, publish
from tests.support.logged import watching

VIN = "SALGA2EV5HA123456"


def create_and_fix(vin: str = VIN) -> list[Command]:
    return [
        CreateCommand(
            vin=vin, manufacturer_campaign_reference="RC-7", recall_campaign_start_date=dt.date(2025, 9, 1)
        ),
        FixCommand(vin=vin, manufacturer_campaign_reference="RC-7", rectification_date=dt.date(2026, 1, 2)),
    ]


async def recalls(*args: str) -> Result:
    """``recalls ARGS`` in a thread: the command runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def recorded(worker: Worker, count: int) -> None:
    assert worker.recorder is not None
    async with asyncio.timeout(30):
        await worker.recorder.recorded(count)


async def test_the_ledger_follows_a_create_then_a_fix(
    settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    opened, fixed = create_and_fix()
    await publish(channel, settings, opened)
    await events.wait_for(1)
    await publish(channel, settings, fixed)
    await events.wait_for(2)
    await recorded(worker, 2)

    shown = await recalls("status", VIN.lower(), "--json")
    assert shown.exit_code == 0, shown.output
    [entry] = json.loads(shown.output)
    assert (entry["manufacturer_campaign_reference"], entry["state"]) == ("RC-7", "fixed")
    assert (entry["recall_campaign_start_date"], entry["rectification_date"]) == ("2025-09-01", "2026-01-02")
    assert entry["last_message_id"] == fixed.message_id

    table = await recalls("status", VIN)
    assert table.exit_code == 0
    assert "RC-7" in table.output and "fixed" in table.output and "2026-01-02" in table.output


async def test_status_of_an_unknown_or_invalid_vin(store_path: Path) -> None:
    async with Database.connect(load_settings(sqlite_path=store_path)):
        pass  # the store a worker makes, holding nothing yet
    nothing = await recalls("status", "WAUZZZ8V000000001")
    assert nothing.exit_code == 0
    assert "nothing" in nothing.output
    invalid = await recalls("status", "WAUZZZ-8V")
    assert invalid.exit_code == 2
    assert "vin" in invalid.output and "16 or 17 letters and digits" in invalid.output


async def test_a_batch_completes_when_its_outcomes_are_recorded(
    settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    commands = create_and_fix("WAUZZZ8V000000777")
    async with Database.connect(settings) as db:
        batches = Batches(db)
        batch_id = await batches.start("import", "it.csv")
        claimed = await batches.claim(batch_id, commands)
        for command in claimed:  # one at a time: the fix must follow its create
            await publish(channel, settings, command)
            await events.wait_for(len(events.received) + 1)
        await batches.published([command.message_id for command in claimed])
        await recorded(worker, 2)
        await batches.close_publishing(batch_id, rejected=1, skipped=0)

    shown = await recalls("batch", "status", batch_id, "--json")
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)
    assert (status["status"], status["total"], status["succeeded"], status["rejected"]) == (
        "completed",
        2,
        2,
        1,
    )
    table = await recalls("batch", "status", batch_id)
    assert "completed" in table.output
    unknown = await recalls("batch", "status", "0" * 32)
    assert unknown.exit_code == 2  # an id to correct
    assert "no batch job" in unknown.output


def rename_table(path: Path, old: str, new: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute(f"ALTER TABLE {old} RENAME TO {new}")
        connection.commit()


async def test_events_the_store_refuses_go_back_to_the_queue_and_are_recorded_later(
    settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    with watching("recalls.worker.ledger", "could not record") as refused:
        await asyncio.to_thread(rename_table, settings.sqlite_path, "ledger", "ledger_away")
        opened, _ = create_and_fix("WAUZZZ8V000000888")
        await publish(channel, settings, opened)
        await events.wait_for(1)
        await refused.seen()
    assert worker.recorder is not None and worker.recorder.recorded_count == 0

    await asyncio.to_thread(rename_table, settings.sqlite_path, "ledger_away", "ledger")
    await recorded(worker, 1)
    shown = await recalls("status", "WAUZZZ8V000000888", "--json")
    [entry] = json.loads(shown.output)
    assert (entry["state"], entry["last_message_id"]) == ("open", opened.message_id)
