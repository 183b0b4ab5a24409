"""A 409 is read for what it says: a repeat only when DVSA holds the command's campaign.

The sandbox runs with ``--conflict vin``, as DVSA's own mock answers: 409 for any VIN it already holds,
naming that vehicle's first campaign.  A second campaign on a known VIN must then end ``failed`` with
reason ``conflict``, in the dead-letter queue, and never open in the ledger; a true repeat still ends
``already_applied``.  A fix DVSA already holds as fixed keeps only a date the ledger knew.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractChannel

from recalls.shared.contracts import CreateCommand, FixCommand
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger, LedgerEntry
from recalls.workers.runtime import Worker
from tests.integration.conftest import DeadLetters, Events, Sandbox, base_settings, publish, running_sandbox
from tests.support.commands import vin

START = dt.date(2025, 9, 1)


@pytest.fixture
async def sandbox(prefix: str) -> AsyncIterator[Sandbox]:
    async with running_sandbox(base_settings(prefix), "--conflict", "vin") as running:
        yield running


def create(car: str, reference: str) -> CreateCommand:
    return CreateCommand(vin=car, manufacturer_campaign_reference=reference, recall_campaign_start_date=START)


async def ledger_entries(settings: Settings, car: str, worker: Worker, recorded: int) -> list[LedgerEntry]:
    """The ledger's entries for ``car`` once the recorder has taken ``recorded`` events."""
    assert worker.recorder is not None
    async with asyncio.timeout(30):
        await worker.recorder.recorded(recorded)
    async with Database.connect(settings) as db:
        return await Ledger(db).for_vin(car)


async def test_a_second_campaign_on_a_known_vin_is_a_conflict_not_a_repeat(
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    dead: DeadLetters,
    worker: Worker,
    sandbox: Sandbox,
) -> None:
    car = vin(1)
    first, second, again = create(car, "RC-1"), create(car, "RC-2"), create(car, "RC-1")
    await publish(channel, settings, first)
    await events.wait_for(1)
    await publish(channel, settings, second)
    await events.wait_for(2)
    await publish(channel, settings, again)  # a new message of the same campaign: a true repeat
    await events.wait_for(3)
    outcomes = events.by_id()

    assert outcomes[first.message_id].result == "applied"
    refused = outcomes[second.message_id]
    assert (refused.result, refused.dvsa_status) == ("failed", 409)
    assert refused.reason is not None and refused.reason.startswith("conflict: DVSA 409 RECALLS-CF-01")
    assert "Vehicle already registered" in refused.reason
    assert outcomes[again.message_id].result == "already_applied"

    [letter] = await dead.wait_for(1)
    headers = letter.headers or {}
    assert letter.message_id == second.message_id
    assert str(headers["x-reason"]).startswith("conflict: ")
    assert headers["x-dvsa-status"] == 409

    entries = await ledger_entries(settings, car, worker, recorded=3)
    assert [(e.manufacturer_campaign_reference, e.state) for e in entries] == [("RC-1", "open")]
    assert [r["manufacturerCampaignReference"] for r in await sandbox.recalls()] == ["RC-1"]


async def test_a_fix_dvsa_already_holds_keeps_no_guessed_date(
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    worker: Worker,
    sandbox: Sandbox,
) -> None:
    car = vin(2)
    await sandbox.seed(
        [
            {
                "vin": car,
                "manufacturerCampaignReference": "RC-9",
                "recallCampaignStartDate": START.isoformat(),
                "repairStatus": "FIXED",
                "rectificationDate": "2025-10-01",
            }
        ]
    )
    fix = FixCommand(vin=car, manufacturer_campaign_reference="RC-9", rectification_date=dt.date(2026, 1, 2))
    await publish(channel, settings, fix)
    [outcome] = await events.wait_for(1)

    assert outcome.result == "already_applied"
    assert outcome.rectification_date is None  # DVSA holds 2025-10-01, not the command's 2026-01-02
    [entry] = await ledger_entries(settings, car, worker, recorded=1)
    assert (entry.state, entry.rectification_date) == ("fixed", None)
