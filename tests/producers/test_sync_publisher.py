"""SyncPublisher against the real RabbitMQ: blocking publishes from threads without an event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

import pytest
from aio_pika.abc import AbstractConnection

from recalls.producers.config import PublisherConfig, publisher_config
from recalls.producers.publisher import QueueFull
from recalls.producers.sync_publisher import SyncPublisher
from recalls.shared.amqp import BrokerUnreachable, Unroutable
from recalls.shared.contracts import GetCommand
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.shared.validation import InvalidCommand
from tests.producers.conftest import QueueCount

pytestmark = pytest.mark.integration

VIN = "WAUZZZF49HA036784"
_T = TypeVar("_T")


def loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("SyncPublisher ")]


async def in_plain_thread(work: Callable[[], _T]) -> _T:
    """``work`` run on a thread with no event loop, as a WSGI worker thread is."""
    return await asyncio.to_thread(work)


async def test_a_thread_without_a_loop_publishes_and_gets_the_message_id(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    command = GetCommand(vin=VIN)

    def publish() -> tuple[str, str]:
        with SyncPublisher(publisher_config(settings, name="sync-test")) as publisher:
            return publisher.publish(command), publisher.publish(GetCommand(vin=VIN), lane="bulk")

    live, bulk = await in_plain_thread(publish)
    assert live == command.message_id
    assert await queue_count(names.command_queue("get"), expected=1) == 1
    assert await queue_count(names.command_queue("get", "bulk"), expected=1) == 1
    assert bulk != live
    assert loop_threads() == []  # closing stopped the loop's thread


def attempts(publisher: SyncPublisher) -> list[Exception]:
    """What each of a few bad publishes raised, and the first QueueFull of a queue capped at two."""
    caught: list[Exception] = []
    bad: list[Callable[[], object]] = [
        lambda: publisher.publish(GetCommand(vin="NOT-A-VIN")),
        lambda: publisher.publish(GetCommand(vin=VIN), lane="Live"),  # type: ignore[arg-type]
        lambda: publisher.publish(GetCommand(vin=VIN), lane="background"),  # its queue is gone
    ]
    for work in bad:
        try:
            work()
        except Exception as exc:  # which exception is what is checked
            caught.append(exc)
    for number in range(20):  # a quorum queue may take a few past its cap before it refuses
        try:
            publisher.publish(GetCommand(vin=f"SALGA2EV5HA1000{number:02d}"))
        except QueueFull as exc:
            caught.append(exc)
            break
    return caught


async def test_exceptions_reach_the_caller_unchanged(
    settings: Settings, names: Topology, connection: AbstractConnection
) -> None:
    publisher = SyncPublisher(replace(publisher_config(settings), command_queue_max_length=2))
    await in_plain_thread(publisher.open)
    try:
        async with connection.channel() as channel:
            await channel.queue_delete(names.command_queue("get", "background"))
        caught = await in_plain_thread(lambda: attempts(publisher))
    finally:
        await in_plain_thread(publisher.close)
    assert [type(exc) for exc in caught] == [InvalidCommand, ValueError, Unroutable, QueueFull]
    assert str(caught[0]) == "vin: must be 16 or 17 letters and digits"
    assert isinstance(caught[0], InvalidCommand) and caught[0].errors[0].field == "vin"
    assert str(caught[1]).startswith("lane must be one of")
    assert f"queue {names.command_queue('get')!r} is full" in str(caught[3])


async def test_it_refuses_to_run_in_an_event_loops_thread(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    config = publisher_config(settings)
    with pytest.raises(RuntimeError, match="cannot open from a thread that runs an event loop"):
        SyncPublisher(config).open()
    assert loop_threads() == []

    publisher = SyncPublisher(config)
    await in_plain_thread(publisher.open)
    try:
        with pytest.raises(RuntimeError, match="cannot publish from a thread that runs an event loop"):
            publisher.publish(GetCommand(vin=VIN))
    finally:
        await in_plain_thread(publisher.close)
    assert await queue_count(names.command_queue("get")) == 0


async def test_many_threads_share_one_publisher(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    commands = [GetCommand(vin=VIN, correlation_id=f"request-{number}") for number in range(100)]

    def publish_all() -> list[str]:
        with SyncPublisher(publisher_config(settings)) as publisher, ThreadPoolExecutor(8) as threads:
            return list(threads.map(publisher.publish, commands))

    assert await in_plain_thread(publish_all) == [command.message_id for command in commands]
    assert await queue_count(names.command_queue("get"), expected=100) == 100


async def test_an_unreachable_broker_raises_from_open_and_leaves_no_thread(prefix: str) -> None:
    config = PublisherConfig("amqp://guest:secretpw@127.0.0.1:1/", prefix=prefix, connect_timeout=2)

    def open_it() -> None:
        with SyncPublisher(config):
            raise AssertionError("connected to nothing")

    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:1") as caught:
        await in_plain_thread(open_it)
    assert "secretpw" not in str(caught.value)
    assert loop_threads() == []


def test_publishing_before_opening_is_refused() -> None:
    publisher = SyncPublisher(PublisherConfig("amqp://127.0.0.1/"))
    with pytest.raises(RuntimeError, match="SyncPublisher is not open"):
        publisher.publish(GetCommand(vin=VIN))
    publisher.close()  # closing one never opened does nothing
