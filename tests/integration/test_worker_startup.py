"""What a worker holds before it consumes, against the real broker, Redis and store.

One rate budget per prefix: a second local-mode worker, a local one beside fleet workers and a fleet one
beside a local worker each refuse with one line naming RECALLS_REDIS_URL and exit 2; a local worker's
lock goes with its connection, SIGKILL included; after a reconnect the lock is taken again, and a
worker that finds it taken stops without calling DVSA.  Services that do not answer at start are
waited for, one JSON line a try, and a SIGTERM ends the wait with exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractRobustConnection
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity
from pydantic import SecretStr

from bench.faults.tcp_proxy import TcpProxy
from recalls.cli.main import recalls_command
from recalls.cli.sandbox_process import pointed_at
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology, delete
from recalls.workers import budget
from recalls.workers.budget import Refused, lock_queue, marker_queue
from tests.integration.conftest import (
    Events,
    Sandbox,
    base_settings,
    collect_events,
    publish,
    running_worker,
    worker_env,
)
from tests.support.commands import create
from tests.support.polling import poll_until
from tests.support.ports import free_port
from tests.support.services import AMQP_URL, REDIS_URL

pytestmark = pytest.mark.integration


@dataclass
class Child:
    """A ``recalls worker`` process and the lines it has written to stderr so far."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    pumping: asyncio.Task[None] | None = None

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace"))
            self.changed.set()

    async def seen(self, holds: Callable[[str], bool], count: int = 1, timeout: float = 20) -> list[str]:
        """The first ``count`` lines that hold, once written; fails if the process exits first."""
        async with asyncio.timeout(timeout):
            while len(matching := [line for line in self.lines if holds(line)]) < count:
                assert self.process.returncode is None, "the worker exited:\n" + self.text()
                self.changed.clear()
                waiting = asyncio.ensure_future(self.changed.wait())
                exiting = asyncio.ensure_future(self.process.wait())
                await asyncio.wait({waiting, exiting}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        return matching[:count]

    async def consuming(self) -> None:
        await self.seen(lambda line: "worker consuming" in line)

    async def exited(self, timeout: float = 20) -> int:
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            if self.pumping is not None:
                await self.pumping
        return code

    async def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await self.exited()

    def text(self) -> str:
        return "".join(self.lines)


class Start(Protocol):
    def __call__(self, env: dict[str, str], *args: str) -> Awaitable[Child]: ...


@pytest.fixture
async def children() -> AsyncIterator[Start]:
    """Starts ``recalls worker`` children; kills any a failed test left running."""
    started: list[Child] = []

    async def start(env: dict[str, str], *args: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            *recalls_command("worker", *args), env=env, stderr=asyncio.subprocess.PIPE
        )
        assert process.stderr is not None
        child = Child(process)
        child.pumping = asyncio.create_task(child._pump(process.stderr))
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.returncode is None:
            child.process.kill()
            await child.exited()


@pytest.fixture
def quiet(prefix: str, store_path: Path) -> Settings:
    """Settings of workers that never call DVSA (no sandbox: nothing listens where DVSA would be)."""
    return pointed_at(base_settings(prefix, sqlite_path=store_path), f"http://127.0.0.1:{free_port()}")


@pytest.fixture(autouse=True)
async def no_marks_left(prefix: str) -> AsyncIterator[None]:
    """Whatever a test leaves, the prefix's lock and fleet marker are deleted after it."""
    yield
    async with await aio_pika.connect(AMQP_URL) as connection:
        for queue in (lock_queue(prefix), marker_queue(prefix)):
            with contextlib.suppress(ChannelLockedResource):  # still held: it goes with its connection
                async with connection.channel() as channel:
                    await channel.queue_delete(queue)


@pytest.fixture
async def admin(quiet: Settings) -> AsyncIterator[AbstractConnection]:
    """A connection of the test's own, for workers with no sandbox; at the end their topology goes."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        yield connection
        async with connection.channel() as channel:
            await delete(channel, Topology(quiet.prefix, quiet.retry_tiers))


def entries(child: Child, service: str) -> Callable[[str], bool]:
    """Whether a line is a JSON retry line about ``service``."""

    def holds(line: str) -> bool:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            return isinstance(entry, dict) and entry.get("service") == service and "retry_in_s" in entry
        return False

    return holds


def refusal(child: Child) -> str:
    """The worker's one ``error:`` line; it names RECALLS_REDIS_URL and nothing else came with a traceback."""
    errors = [line for line in child.lines if line.startswith("error:")]
    assert len(errors) == 1, child.text()
    assert "RECALLS_REDIS_URL" in errors[0]
    assert "Traceback" not in child.text()
    return errors[0]


FLEET = {"RECALLS_REDIS_URL": REDIS_URL}


@pytest.mark.parametrize("second", ["local", "fleet"])
async def test_a_second_worker_beside_a_local_one_refuses(
    second: str, quiet: Settings, admin: AbstractConnection, children: Start
) -> None:
    first = await children(worker_env(quiet))
    await first.consuming()
    late = await children(worker_env(quiet, **(FLEET if second == "fleet" else {})))
    assert await late.exited() == 2
    line = refusal(late)
    assert f"another worker on prefix '{quiet.prefix}' runs in local mode (its own 25/s budget)" in line
    assert await first.terminate() == 0


async def test_a_local_worker_beside_fleet_workers_refuses(
    quiet: Settings, admin: AbstractConnection, children: Start
) -> None:
    fleet = await children(worker_env(quiet, **FLEET))
    await fleet.consuming()
    local = await children(worker_env(quiet))
    assert await local.exited() == 2
    assert f"workers on prefix '{quiet.prefix}' run in fleet mode" in refusal(local)
    assert await fleet.terminate() == 0


async def test_a_supervised_fleet_beside_a_local_worker_stops_instead_of_restarting(
    quiet: Settings, admin: AbstractConnection, children: Start
) -> None:
    local = await children(worker_env(quiet))
    await local.consuming()
    fleet = await children(worker_env(quiet, **FLEET), "--processes", "2")
    assert await fleet.exited() == 2
    started = [line for line in fleet.lines if "worker process started" in line]
    assert len(started) == 2, fleet.text()  # the two children, neither restarted to refuse again
    assert any("another worker on prefix" in line for line in fleet.lines)
    assert await local.terminate() == 0


async def lock_taken(connection: AbstractConnection, prefix: str) -> bool:
    """Whether another connection holds the local lock of ``prefix`` (a passive declare says)."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(lock_queue(prefix), passive=True)
    except ChannelLockedResource:
        return True
    except ChannelNotFoundEntity:
        return False
    await channel.close()
    return False


async def test_a_killed_local_worker_leaves_its_lock_to_the_next(
    quiet: Settings, admin: AbstractConnection, children: Start
) -> None:
    first = await children(worker_env(quiet))
    await first.consuming()
    assert await lock_taken(admin, quiet.prefix)
    first.process.kill()
    assert await first.exited() == -signal.SIGKILL
    # The broker drops the lock as soon as it sees the connection close.
    await poll_until(lambda: lock_taken(admin, quiet.prefix), lambda taken: not taken, timeout=10)
    second = await children(worker_env(quiet))
    await second.consuming()
    assert await second.terminate() == 0


async def test_a_worker_waits_for_the_broker_then_consumes(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    children: Start,
) -> None:
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    await proxy.cut()  # the port is known and nothing listens on it
    try:
        child = await children(
            worker_env(settings, RECALLS_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        )
        tries = await child.seen(entries(child, "rabbitmq"), count=2)
        first = json.loads(tries[0])
        assert (first["level"], first["attempt"]) == ("warning", 1)
        assert 0.3 <= first["retry_in_s"] <= 0.5
        assert "guest:guest" not in child.text()
        await proxy.restore()
        await child.consuming()
        command = create(50_001)
        await publish(channel, settings, command)
        (event,) = await events.wait_for(1, timeout=20)
        assert (event.message_id, event.result) == (command.message_id, "applied")
        assert await child.terminate() == 0
    finally:
        await proxy.close()
    assert "Traceback" not in child.text()
    assert not [line for line in child.lines if "aiormq" in line]  # the retry line says it once


async def test_a_fleet_worker_waits_for_redis(
    quiet: Settings, admin: AbstractConnection, children: Start
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    await proxy.cut()
    try:
        child = await children(worker_env(quiet, RECALLS_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0"))
        tries = await child.seen(entries(child, "redis"), count=2)
        assert [json.loads(line)["attempt"] for line in tries] == [1, 2]
        assert "worker consuming" not in child.text()
        await proxy.restore()
        await child.consuming()
        assert await child.terminate() == 0
    finally:
        await proxy.close()
    assert "Traceback" not in child.text()


async def test_sigterm_while_waiting_for_the_store_exits_cleanly(quiet: Settings, children: Start) -> None:
    url = f"postgresql://recalls:distinctive-db-secret@127.0.0.1:{free_port()}/recalls"
    child = await children(worker_env(quiet, RECALLS_DATABASE_URL=url))
    tries = await child.seen(entries(child, "store"), count=2)
    assert "ConnectionRefusedError" in json.loads(tries[0])["error"]
    assert await child.terminate() == 0
    assert "distinctive-db-secret" not in child.text()
    assert "Traceback" not in child.text()


# --- reconnects, with an in-process worker behind a proxy ------------------------------------------


@contextlib.asynccontextmanager
async def behind_proxy(settings: Settings) -> AsyncIterator[tuple[TcpProxy, Settings]]:
    """A proxy to the broker and the test's settings pointed at it, reconnecting every 0.2 s."""
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.2"
    try:
        yield proxy, settings.model_copy(update={"amqp_url": SecretStr(url)})
    finally:
        await proxy.close()


async def take_lock(connection: AbstractConnection, prefix: str) -> bool:
    """Try to take the local lock of ``prefix`` on ``connection``."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(lock_queue(prefix), exclusive=True)
    except ChannelLockedResource:
        return False
    return True


async def test_a_local_worker_retakes_its_lock_after_a_reconnect(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, broker: AbstractRobustConnection
) -> None:
    async with behind_proxy(settings) as (proxy, proxied):
        collected = await collect_events(channel, proxied)
        async with running_worker(proxied) as worker:
            await proxy.cut()
            await poll_until(lambda: lock_taken(broker, settings.prefix), lambda taken: not taken)
            await proxy.restore()
            await poll_until(lambda: lock_taken(broker, settings.prefix), bool)
            await publish(channel, proxied, create(50_101))
            await collected.wait_for(1, timeout=20)
            assert worker.alive()
    assert [event.result for event in collected.received] == ["applied"]


async def test_a_local_worker_whose_lock_was_taken_meanwhile_stops_without_calling_dvsa(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    broker: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(budget, "RETAKE_PATIENCE_S", 1.0)
    async with await aio_pika.connect(AMQP_URL) as rival, behind_proxy(settings) as (proxy, proxied):
        with pytest.raises(Refused, match="RECALLS_REDIS_URL"):
            async with running_worker(proxied) as worker:
                await proxy.cut()
                # Another local worker starts while this one is cut off, and takes the lock.
                await poll_until(lambda: take_lock(rival, settings.prefix), bool)
                await publish(channel, proxied, create(50_201))
                await proxy.restore()

                async def alive() -> bool:
                    return worker.alive()

                await poll_until(alive, lambda alive: not alive)
        await poll_until(lambda: waiting(broker, settings), lambda count: count == 1)  # handed back
    assert await sandbox.recalls() == []  # and never sent


async def waiting(connection: AbstractRobustConnection, settings: Settings) -> int:
    """How many commands wait in the live create queue."""
    async with connection.channel() as channel:
        queue = await channel.declare_queue(Topology(settings.prefix).command_queue("create"), passive=True)
        return queue.declaration_result.message_count or 0
