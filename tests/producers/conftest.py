"""Fixtures for the producer tests: a prefix of their own on the real RabbitMQ, cleaned up afterwards.

Every test that touches the broker gets a random prefix (``t-<8 hex>``), so its exchanges and queues
never meet another test's or a running fleet's; they are deleted when the test ends, pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aiormq.exceptions import AMQPError

from recalls.shared.settings import Settings, load_settings
from recalls.shared.topology import Topology, declared_names

RETRY_TIERS = (1.0,)  # one tier is enough for publishing, and quorum queues are slow to declare


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(prefix: str) -> Settings:
    return load_settings(prefix=prefix, retry_tiers=RETRY_TIERS)


@pytest.fixture
def names(settings: Settings) -> Topology:
    return Topology(settings.prefix, settings.retry_tiers)


@pytest.fixture
def cli_env(prefix: str) -> Iterator[dict[str, str]]:
    """Environment for a ``recalls`` subprocess that uses this test's prefix."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECALLS_")}
    yield {**env, "RECALLS_PREFIX": prefix, "RECALLS_RETRY_TIERS": "[1]"}


@pytest.fixture
async def connection(settings: Settings, names: Topology) -> AsyncIterator[AbstractRobustConnection]:
    """A connection to the real broker; everything under the test's prefix is deleted afterwards."""
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    try:
        yield connection
    finally:
        await delete_topology(connection, names)
        await connection.close()


async def delete_topology(connection: AbstractConnection, names: Topology) -> None:
    """Delete every exchange and queue of ``names``; missing ones are fine."""
    for line in declared_names(names):
        kind, name = line.split(" ", 1)
        # A failed delete closes its channel, so each gets its own.
        async with connection.channel() as channel:
            with contextlib.suppress(AMQPError):
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)


QueueCount = Callable[..., Awaitable[int]]


@pytest.fixture
def queue_count(connection: AbstractConnection) -> QueueCount:
    """Messages ready in a queue; with ``expected``, waits briefly for the count to reach it.

    A quorum queue's count can lag its publisher confirm by a moment, so an exact check polls.
    """

    async def count(queue: str, *, expected: int | None = None) -> int:
        ready = -1
        for _ in range(50):
            async with connection.channel() as channel:
                declared = await channel.declare_queue(queue, passive=True)
                ready = declared.declaration_result.message_count or 0
            if expected is None or ready == expected:
                return ready
            await asyncio.sleep(0.1)
        return ready

    return count
