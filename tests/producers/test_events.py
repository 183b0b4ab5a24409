"""The outcome subscriber against the real RabbitMQ: events published as the workers publish them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from pamqp.commands import Basic

from recalls.producers.config import PublisherConfig
from recalls.producers.events import events
from recalls.shared.amqp import publish_body_confirmed
from recalls.shared.contracts import OutcomeEvent, Verb
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology, TopologyError
from recalls.workers.reporting import Reporter
from tests.producers.conftest import QueueCount
from tests.support.logged import watching

pytestmark = pytest.mark.integration

VIN = "WAUZZZF49HA036784"


def an_event(number: int, *, verb: Verb = "create", failed: bool = False) -> OutcomeEvent:
    now = dt.datetime.now(dt.UTC)
    return OutcomeEvent(
        message_id=f"event-{number}",
        verb=verb,
        vin=VIN,
        manufacturer_campaign_reference="RC-1",
        result="failed" if failed else "applied",
        reason="permanent" if failed else None,
        attempts=1,
        first_seen_at=now,
        completed_at=now,
    )


@pytest.fixture
def config(settings: Settings) -> PublisherConfig:
    return PublisherConfig(settings.amqp_url.get_secret_value(), prefix=settings.prefix, name="events-test")


@pytest.fixture
async def queue(connection: AbstractConnection, names: Topology) -> AsyncIterator[str]:
    """The subscriber's queue (outside the fleet's names), deleted afterwards; the events exchange exists."""
    name = f"app-{names.prefix}.outcomes"
    async with connection.channel() as channel:
        await channel.declare_exchange(names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    yield name
    async with connection.channel() as channel:
        await channel.queue_delete(name)


@pytest.fixture
async def fleet(connection: AbstractConnection, names: Topology) -> AsyncIterator[Reporter]:
    """What the workers publish outcomes with."""

    async def nothing_to_mend() -> None:
        pass

    async with connection.channel() as channel:
        yield await Reporter.open(channel, names, nothing_to_mend)


async def test_an_event_the_fleet_publishes_arrives_decoded(
    config: PublisherConfig, queue: str, fleet: Reporter
) -> None:
    sent = an_event(1, verb="fix")
    async with contextlib.aclosing(events(config, queue=queue)) as stream:
        with watching("recalls.events", "following outcome events") as following:
            first = asyncio.ensure_future(anext(stream))
            await following.seen(1)
        await fleet.outcome(sent, reply_to=None)
        assert await first == sent


async def test_routing_keys_filter_and_an_undecodable_message_is_rejected_not_fatal(
    config: PublisherConfig,
    queue: str,
    fleet: Reporter,
    connection: AbstractConnection,
    names: Topology,
    queue_count: QueueCount,
) -> None:
    async with (
        contextlib.aclosing(events(config, queue=queue, routing_keys=["recall.failed"])) as stream,
        connection.channel() as channel,
    ):
        with watching("recalls.events", "following outcome events") as following:
            first = asyncio.ensure_future(anext(stream))
            await following.seen(1)
        with watching("recalls.events", "rejected a message on the events queue") as rejected:
            properties = Basic.Properties(message_id="junk", content_type="application/json")
            await publish_body_confirmed(channel, names.events_exchange, b"{", properties, "recall.failed")
            await rejected.seen(1)
        await fleet.outcome(an_event(2), reply_to=None)  # recall.created: not bound
        failure = an_event(3, failed=True)
        await fleet.outcome(failure, reply_to=None)
        assert await first == failure
    # Left unacknowledged (the loop never asked for the next), the failure alone waits in the queue:
    # the junk was rejected for good, and the create never routed to it.
    assert await queue_count(queue, expected=1) == 1


async def test_an_event_is_acknowledged_only_when_the_loop_asks_for_the_next(
    config: PublisherConfig,
    queue: str,
    fleet: Reporter,
    connection: AbstractConnection,
    queue_count: QueueCount,
) -> None:
    async with contextlib.aclosing(events(config, queue=queue)) as stream:
        with watching("recalls.events", "following outcome events") as following:
            first = asyncio.ensure_future(anext(stream))
            await following.seen(1)
        for number in (1, 2):
            await fleet.outcome(an_event(number), reply_to=None)
        assert (await first).message_id == "event-1"
    # The body failed (or broke off) before asking for the next: event-1 comes again, then event-2.
    seen = []
    async with contextlib.aclosing(events(config, queue=queue)) as stream:
        async for event in stream:
            seen.append(event.message_id)
            if len(seen) == 2:
                break  # event-1 was acknowledged by asking for event-2; event-2 is not
    assert seen == ["event-1", "event-2"]
    assert await queue_count(queue, expected=1) == 1


async def test_a_missing_events_exchange_is_named(config: PublisherConfig, names: Topology) -> None:
    with pytest.raises(TopologyError, match=rf"no exchange '{names.events_exchange}'"):
        await anext(events(config, queue=f"app-{names.prefix}.outcomes"))


@pytest.mark.parametrize("queue", ["", "recalls.ledger", "recalls.dead", "amq.gen-abc"])
async def test_the_fleets_own_queues_are_refused(queue: str) -> None:
    stream = events(PublisherConfig("amqp://127.0.0.1:1/"), queue=queue)
    with pytest.raises(ValueError, match="queue must be a name of the caller's own"):
        await anext(stream)


async def test_routing_keys_must_be_a_list() -> None:
    stream = events(
        PublisherConfig("amqp://127.0.0.1:1/"), queue="app.outcomes", routing_keys="recall.failed"
    )
    with pytest.raises(ValueError, match="routing_keys must be a list"):
        await anext(stream)


async def test_events_from_a_sender_not_given_are_rejected(
    config: PublisherConfig, queue: str, fleet: Reporter, queue_count: QueueCount
) -> None:
    async with contextlib.aclosing(events(config, queue=queue, senders={"recalls-worker"})) as stream:
        with watching("recalls.events", "following outcome events") as following:
            first = asyncio.ensure_future(anext(stream))
            await following.seen(1)
        with watching("recalls.events", "sent by 'guest', not one of the senders given") as rejected:
            await fleet.outcome(an_event(1), reply_to=None)  # published as guest
            await rejected.seen(1)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
    assert await queue_count(queue) == 0


async def test_with_declare_the_subscriber_declares_the_fleets_topology_first(
    config: PublisherConfig, names: Topology, connection: AbstractConnection, fleet: Reporter
) -> None:
    queue = f"app-{names.prefix}.declared"
    try:
        stream = events(replace(config, declare=True, retry_tiers=tuple(names.retry_tiers)), queue=queue)
        async with contextlib.aclosing(stream):
            with watching("recalls.events", "following outcome events") as following:
                first = asyncio.ensure_future(anext(stream))
                await following.seen(1)
            await fleet.outcome(an_event(1), reply_to=None)
            assert (await first).message_id == "event-1"
        async with connection.channel() as channel:  # the fleet's own queues are there
            await channel.declare_queue(names.ledger_queue, passive=True)
    finally:
        async with connection.channel() as channel:
            await channel.queue_delete(queue)
