"""Fixtures for end-to-end tests: the real RabbitMQ, a DVSA sandbox in its own process, and workers.

Each test gets its own prefix, so its exchanges and queues never meet another test's, and they are
deleted afterwards; and its own SQLite file for the store, so no test shares the ledger of another.
The sandbox runs as a separate process (as DVSA would be), so the time it stamps on arrivals is not
distorted by the worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import aio_pika
import httpx
import msgspec
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from recalls.cli.sandbox_process import credential_env, pointed_at, sandbox_process
from recalls.shared.contracts import Command, OutcomeEvent
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology, declare, delete
from recalls.workers.runtime import Worker, dvsa_client
from tests.support.services import AMQP_URL

pytestmark = pytest.mark.integration

T = TypeVar("T")


@dataclass
class Sandbox:
    """A running DVSA sandbox process and a client for its admin API."""

    url: str
    admin: httpx.AsyncClient

    async def recalls(self) -> list[dict[str, Any]]:
        response = await self.admin.get("/__admin/recalls")
        response.raise_for_status()
        body = response.json()
        return list(body)

    async def stats(self) -> dict[str, Any]:
        response = await self.admin.get("/__admin/stats")
        response.raise_for_status()
        return dict(response.json())

    async def faults(self, **faults: float) -> None:
        response = await self.admin.put("/__admin/faults", json=faults)
        response.raise_for_status()

    async def requests(self) -> list[dict[str, Any]]:
        response = await self.admin.get("/__admin/requests")
        response.raise_for_status()
        body = response.json()
        return list(body)

    async def seed(self, recalls: list[dict[str, Any]]) -> None:
        """Put recalls into DVSA's state directly, as if they had been created before the test."""
        response = await self.admin.post("/__admin/recalls", json=recalls)
        response.raise_for_status()

    async def remove(self, vin: str, manufacturer_reference: str) -> None:
        """Drop a recall behind the fleet's back, whatever its status."""
        response = await self.admin.delete(
            f"/__admin/recalls/{vin}", params={"manufacturerCampaignReference": manufacturer_reference}
        )
        response.raise_for_status()

    async def set_status(
        self, vin: str, manufacturer_reference: str, repair_status: str, rectification_date: str | None = None
    ) -> None:
        """Change a recall's status behind the fleet's back, with none of DVSA's rules."""
        body = {"repairStatus": repair_status, "rectificationDate": rectification_date}
        response = await self.admin.patch(
            f"/__admin/recalls/{vin}",
            params={"manufacturerCampaignReference": manufacturer_reference},
            json=body,
        )
        response.raise_for_status()


@contextlib.asynccontextmanager
async def running_sandbox(settings: Settings, *flags: str) -> AsyncIterator[Sandbox]:
    async with sandbox_process(settings, *flags) as url, httpx.AsyncClient(base_url=url, timeout=10) as admin:
        yield Sandbox(url, admin)


def base_settings(prefix: str, **overrides: Any) -> Settings:
    """Settings for a test: its own prefix, fast retry tiers, short timeouts."""
    values: dict[str, Any] = {
        "prefix": prefix,
        "dvsa_client_id": "it-client",
        "dvsa_client_secret": "it-secret-value",
        "dvsa_scope": "api://it/.default",
        "dvsa_api_key": "it-api-key-0123456789",
        "retry_tiers": (0.2, 0.5, 1.0, 2.0),
        "dvsa_timeout": 2.0,
        "shutdown_grace": 5.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def prefix() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's SQLite file; also in the environment, for settings a test builds itself."""
    path = tmp_path / "store" / "recalls.db"
    monkeypatch.setenv("RECALLS_SQLITE_PATH", str(path))
    return path


@pytest.fixture
async def sandbox(prefix: str) -> AsyncIterator[Sandbox]:
    async with running_sandbox(base_settings(prefix)) as running:
        yield running


@pytest.fixture
def settings(prefix: str, sandbox: Sandbox, store_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The test's settings; ``@pytest.mark.settings(name=value)`` overrides any of them."""
    marker = request.node.get_closest_marker("settings")
    overrides = {"sqlite_path": store_path, **(marker.kwargs if marker else {})}
    return pointed_at(base_settings(prefix, **overrides), sandbox.url)


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        yield connection
    finally:
        channel = await connection.channel()
        await delete(channel, Topology(settings.prefix, settings.retry_tiers))
        await channel.close()
        await connection.close()


@dataclass
class Collected(Generic[T]):
    """Messages consumed from a queue, decoded, with a wait for the n-th to arrive."""

    decode: Callable[[AbstractIncomingMessage], T]
    received: list[T] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.received.append(self.decode(message))
            self.changed.set()

    async def wait_for(self, count: int, timeout: float = 60) -> list[T]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.received


class Events(Collected[OutcomeEvent]):
    """Outcome events from a queue bound to the events exchange."""

    def __init__(self) -> None:
        super().__init__(lambda message: msgspec.json.decode(message.body, type=OutcomeEvent))

    def by_id(self) -> dict[str, OutcomeEvent]:
        return {event.message_id: event for event in self.received}


@pytest.fixture
async def channel(broker: AbstractRobustConnection, settings: Settings) -> AsyncIterator[AbstractChannel]:
    ch = await broker.channel(publisher_confirms=True)
    await declare(ch, Topology(settings.prefix, settings.retry_tiers))
    yield ch


@pytest.fixture
async def events(channel: AbstractChannel, settings: Settings) -> Events:
    return await collect_events(channel, settings)


async def collect_events(channel: AbstractChannel, settings: Settings) -> Events:
    """Every outcome event of ``settings.prefix`` from now on (the topology is declared first)."""
    await declare(channel, Topology(settings.prefix, settings.retry_tiers))
    collected = Events()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(Topology(settings.prefix).events_exchange, routing_key="#")
    await queue.consume(collected.on_message)
    return collected


def worker_env(settings: Settings, **variables: str) -> dict[str, str]:
    """The environment of a ``recalls worker`` child that matches ``settings`` (plus ``variables``)."""
    return {
        **os.environ,
        **credential_env(settings),
        "RECALLS_PREFIX": settings.prefix,
        "RECALLS_SANDBOX_HOST": settings.sandbox_host,
        "RECALLS_SANDBOX_PORT": str(settings.sandbox_port),
        "RECALLS_RATE_MARGIN": str(settings.rate_margin),
        "RECALLS_SQLITE_PATH": str(settings.sqlite_path),
        # The test's own tiers, so the retry queues a child declares are those the test deletes.
        "RECALLS_RETRY_TIERS": json.dumps(list(settings.retry_tiers)),
        "RECALLS_SHUTDOWN_GRACE": str(settings.shutdown_grace),
        **variables,
    }


async def publish_raw(
    channel: AbstractChannel, settings: Settings, body: bytes, routing_key: str, **properties: Any
) -> None:
    exchange = await channel.get_exchange(Topology(settings.prefix).commands_exchange)
    message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties)
    await exchange.publish(message, routing_key=routing_key, mandatory=True)


async def publish(channel: AbstractChannel, settings: Settings, command: Command, **properties: Any) -> None:
    await publish_raw(
        channel,
        settings,
        msgspec.json.encode(command),
        command.verb,
        message_id=command.message_id,
        content_type="application/json",
        **properties,
    )


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    async with dvsa_client(settings) as dvsa:
        worker = Worker(settings, dvsa)
        task = asyncio.create_task(worker.run())
        ready = asyncio.create_task(worker.ready.wait())
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()  # raises what went wrong
        try:
            yield worker
        finally:
            worker.stop()
            await task


@pytest.fixture
async def worker(settings: Settings, channel: AbstractChannel) -> AsyncIterator[Worker]:
    async with running_worker(settings) as running:
        yield running


DeadLetters = Collected[AbstractIncomingMessage]


@pytest.fixture
async def dead(channel: AbstractChannel, settings: Settings) -> DeadLetters:
    collected = DeadLetters(lambda message: message)
    queue = await channel.get_queue(Topology(settings.prefix).dead_queue)
    await queue.consume(collected.on_message)
    return collected
