"""Live first: a command published behind a deep bulk backlog reaches DVSA within seconds; the
background lane is consumed and applied like the others."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from aio_pika.abc import AbstractChannel
from pydantic import SecretStr

from recalls.shared.contracts import Command, GetCommand, Lane, utc_now
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.workers.runtime import Worker
from tests.integration.conftest import Events, Sandbox, publish, publish_raw, running_worker
from tests.support.commands import create
from tests.support.services import REDIS_URL

BACKLOG = 2000


async def publish_on(channel: AbstractChannel, settings: Settings, command: Command, lane: Lane) -> None:
    await publish_raw(
        channel,
        settings,
        msgspec.json.encode(command),
        Topology(settings.prefix).routing_key(command.verb, lane),
        message_id=command.message_id,
        content_type="application/json",
    )


async def publish_bulk_backlog(channel: AbstractChannel, settings: Settings) -> None:
    for n in range(BACKLOG):
        await publish_on(channel, settings, create(n, campaign="BULK1"), "bulk")


@pytest.mark.parametrize("mode", ["local", "fleet"])
async def test_a_live_create_overtakes_a_bulk_backlog(
    mode: str, sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    if mode == "fleet":
        settings = settings.model_copy(update={"redis_url": SecretStr(REDIS_URL)})
    await publish_bulk_backlog(channel, settings)
    async with running_worker(settings):
        await events.wait_for(50)  # the bulk lane is draining at the full rate
        urgent = create(BACKLOG + 1, campaign="LIVE1")
        published = utc_now()
        await publish(channel, settings, urgent)
        while urgent.message_id not in events.by_id():
            await events.wait_for(len(events.received) + 1)
        outcome = events.by_id()[urgent.message_id]
        assert outcome.result == "applied" and outcome.lane == "live"
        assert outcome.completed_at - published < dt.timedelta(seconds=2)
        # Ahead of the bulk commands the worker already holds (its prefetch), not behind them: at
        # most the bulk calls booked or in flight when it reached the limiter.
        meanwhile = [e for e in events.received if published < e.completed_at < outcome.completed_at]
        overtaken_by = [e for e in meanwhile if e.lane == "bulk"]
        assert len(overtaken_by) <= 3
        # Bulk work was not starved either: it kept going at the verb's rate around the live call.
        assert sum(1 for e in events.received if e.lane == "bulk") >= 50
        stats = await sandbox.stats()
        assert stats["create"]["throttled"] == 0


async def test_a_get_on_the_background_lane_is_applied_and_reported_as_background(
    settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    opened = create(1, campaign="SWEEP1")
    await publish(channel, settings, opened)
    await events.wait_for(1)
    checked = GetCommand(vin=opened.vin)
    await publish_on(channel, settings, checked, "background")  # routing key get.background
    await events.wait_for(2)
    outcome = events.by_id()[checked.message_id]
    assert (outcome.verb, outcome.result, outcome.lane) == ("get", "applied", "background")
    assert [recall.manufacturer_campaign_reference for recall in outcome.recalls or []] == ["SWEEP1"]
