"""The fleet under test: a sandbox, worker processes, a publisher and an outcome collector, per run.

    async with fault_run("crash") as run:
        await run.publish(workload.commands)
        run.fault("worker 1 killed"); await run.workers[1].kill(); await run.workers[1].start()
        await run.wait_for_outcomes(workload.message_ids, timeout=120)
        figures = await run.figures(workload)

Everything a run creates (its prefix's topology, its outcome queue, its processes, its scratch ledger)
is removed at the end, even when the scenario fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import fleet_throughput
from bench.faults import figures as measure
from bench.faults.figures import Figures
from bench.faults.processes import SandboxControl, WorkerProcess
from bench.faults.workload import Workload
from bench.ports import free_port
from recalls.cli.sandbox_process import pointed_at
from recalls.ops.dead_letters import DeadLetter, DeadLetterQueue
from recalls.producers.publisher import Publisher
from recalls.shared.amqp import connect, publish_confirmed
from recalls.shared.contracts import Command, OutcomeEvent
from recalls.shared.redis_client import redis_client
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.database import Database
from recalls.shared.topology import Topology, declare, delete

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"  # this machine's, trust auth
RETRY_TIERS = (0.5, 1, 2, 4, 8, 15, 30)
PUBLISH_PATIENCE = 120.0  # seconds publish() keeps re-sending commands the broker did not confirm
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


@dataclass(frozen=True)
class Mode:
    """Short (CI) or long (the figures for the README)."""

    long: bool

    @property
    def name(self) -> str:
        return "long" if self.long else "short"

    def size(self, short: int, long: int) -> int:
        return long if self.long else short


class Outcomes(fleet_throughput.Outcomes):
    """Outcome events by message_id (the latest of each), counting the events that repeat one."""

    repeats: int = 0

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        before = len(self.events)
        await super().on_message(message)
        self.repeats += len(self.events) == before


class FaultRun:
    """One run's fleet; build it with :func:`fault_run`."""

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        sandbox: SandboxControl,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        publisher: Publisher,
    ) -> None:
        self.name = name
        self.settings = settings
        self.prefix = settings.prefix
        self.topology = Topology(settings.prefix, settings.retry_tiers)
        self.sandbox = sandbox
        self.workers: list[WorkerProcess] = []
        self.collected = Outcomes()
        self.outcomes: dict[str, OutcomeEvent] = self.collected.events
        self.fault_stamps: list[tuple[str, float]] = []
        self.started_at = time.time()
        self.rss_mb_start = 0.0
        self._connection = connection
        self._channel = channel
        self._publisher = publisher

    @property
    def outcome_queue(self) -> str:
        return f"{self.prefix}.faults.outcomes"

    async def publish(self, commands: Sequence[Command]) -> None:
        """Publish every command, confirmed; re-send the unconfirmed (same message_id: safe) until done."""
        pending = list(commands)
        deadline = time.monotonic() + PUBLISH_PATIENCE
        while pending:
            results = await self._publisher.publish_many(pending)
            failed = [(c, r) for c, r in zip(pending, results, strict=True) if isinstance(r, Exception)]
            if failed and time.monotonic() > deadline:
                raise RuntimeError(f"{len(failed)} commands never confirmed, e.g. {failed[0][1]!r}")
            pending = [command for command, _ in failed]
            if pending:
                await asyncio.sleep(0.5)  # the broker is away: nothing to await but its return

    async def publish_raw(self, body: bytes, routing_key: str, **properties: Any) -> None:
        """Publish any bytes to the commands exchange (persistent, confirmed, mandatory)."""
        exchange = await self._channel.get_exchange(self.topology.commands_exchange)
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties)
        await publish_confirmed(exchange, message, routing_key)

    async def wait_for_outcomes(self, message_ids: Collection[str], timeout: float) -> None:  # noqa: ASYNC109 - the suite's interface
        """Return once every message_id has an outcome event; TimeoutError after ``timeout`` s."""
        if not await self.collected.wait_for(set(message_ids), timeout):
            missing = len(set(message_ids) - self.outcomes.keys())
            raise TimeoutError(
                f"{missing} of {len(message_ids)} commands without an outcome after {timeout:g} s"
            )

    async def stall(self, message_ids: Collection[str], timeout: float) -> str:  # noqa: ASYNC109 - a budget
        """:meth:`wait_for_outcomes`; "" once all are in, else why not (the figures count what is missing)."""
        try:
            await self.wait_for_outcomes(message_ids, timeout)
        except TimeoutError as error:
            return str(error)
        return ""

    async def dead_letters(self) -> list[DeadLetter]:
        """The dead-letter queue's messages, left in it."""
        return await DeadLetterQueue(self._connection, self.topology).list()

    def fault(self, label: str) -> None:
        """Stamp the time of a fault (now), for its recovery time."""
        self.fault_stamps.append((label, time.time()))

    async def figures(self, workload: Workload, *, expected_dead: int = 0) -> Figures:
        """The run's figures, with a problem for each promise that did not hold."""
        journal, stats = await self.sandbox.requests(), await self.sandbox.stats()
        recalls = await self.sandbox.recalls()
        dead = await self.dead_letters()
        events = [self.outcomes[i] for i in workload.message_ids if i in self.outcomes]
        lost = workload.lost(recalls, self.outcomes, {letter.message_id for letter in dead})
        twice = measure.applied_twice(journal, recalls, workload.creates)
        result = Figures(
            scenario=self.name,
            mode="",
            commands_in=len(workload.commands),
            applied=sum(event.result == "applied" for event in events),
            already_applied=sum(event.result == "already_applied" for event in events),
            dead_lettered=len(dead),
            lost=len(lost),
            applied_twice=len(twice),
            throttled_429=measure.throttled(stats),
            max_in_window=measure.max_in_window(stats),
            faults=[
                {"label": label, "at": at, "recovery_s": measure.recovery(journal, at)}
                for label, at in self.fault_stamps
            ],
            worker_crashes=sum(worker.crashes for worker in self.workers),
            rss_mb_start=self.rss_mb_start,
            rss_mb_end=max((worker.rss_mb() for worker in self.workers), default=0.0),
            duration_s=round(time.time() - self.started_at, 1),
            extra={
                "dead_expected": expected_dead,
                "outcome_repeats": self.collected.repeats,
                "journaled": len(journal),
            },
        )
        _judge(
            result,
            limit=self.settings.rate_limit,
            expected_dead=expected_dead,
            lost=lost,
            twice=twice,
            workers=self.workers,
        )
        return result


def _judge(
    result: Figures,
    *,
    limit: int,
    expected_dead: int,
    lost: Mapping[str, str],
    twice: Sequence[str],
    workers: Sequence[WorkerProcess],
) -> None:
    if lost:
        result.problem(f"{len(lost)} lost, e.g. " + "; ".join(list(lost.values())[:3]))
    if twice:
        result.problem(f"{len(twice)} applied twice, e.g. " + "; ".join(twice[:3]))
    if result.throttled_429:
        result.problem(f"DVSA answered {result.throttled_429} 429s")
    if result.dead_lettered != expected_dead:
        result.problem(f"{result.dead_lettered} dead letters, expected {expected_dead}")
    if result.worker_crashes:
        exits = [text for worker in workers for text in worker.exits]
        result.problem(f"{result.worker_crashes} worker crashes: " + " || ".join(exits)[:2000])
    busy = {verb: n for verb, n in result.max_in_window.items() if n > limit}
    if busy:
        result.problem(f"more than {limit} calls of one verb in a second: {busy}")
    for fault in result.faults:
        if fault["recovery_s"] is None:
            result.problem(f"no recovery after {fault['label']}")


def worker_environment(
    settings: Settings, index: int, metrics_port: int, ledger: Path, overrides: Mapping[str, str]
) -> dict[str, str]:
    """A worker child's environment: the run's settings, its own metrics port; the first keeps the ledger."""
    redis = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    return fleet_throughput.worker_env(settings, redis) | {
        "RECALLS_AMQP_URL": settings.amqp_url.get_secret_value(),
        "RECALLS_RETRY_TIERS": json.dumps(list(settings.retry_tiers)),
        "RECALLS_SQLITE_PATH": str(ledger),
        "RECALLS_METRICS_PORT": str(metrics_port),
        "RECALLS_RECORD_EVENTS": "true" if index == 0 else "false",
        **overrides,
    }


@contextlib.asynccontextmanager
async def fresh_database(name: str) -> AsyncIterator[str]:
    """A PostgreSQL database of the run's own, migrated as ``recalls migrate`` does before a rollout, and
    dropped afterwards; its URL is for RECALLS_DATABASE_URL."""
    database = f"faults_{name}_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    admin = create_async_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{database}"'))
        async with Database.opened(load_settings(database_url=url)) as store:
            await store.migrate()
        yield url
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def fault_run(
    name: str,
    *,
    workers: int = 3,
    fleet: bool = True,
    amqp_url: str | None = None,
    redis_url: str | None = None,
    retry_tiers: Sequence[float] = RETRY_TIERS,
    worker_env: Mapping[str, str] = {},
    sandbox_env: Mapping[str, str] = {},
    sandbox_flags: Sequence[str] = (),
) -> AsyncIterator[FaultRun]:
    """A fresh fleet under a unique prefix: sandbox, ``workers`` worker processes (consuming), publisher."""
    overrides: dict[str, Any] = {"prefix": f"faults-{name}-{uuid.uuid4().hex[:8]}"}
    overrides["retry_tiers"] = tuple(retry_tiers)
    overrides["redis_url"] = (redis_url or REDIS_URL) if fleet else None
    if amqp_url is not None:
        overrides["amqp_url"] = amqp_url
    settings = load_settings(**overrides)
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        sandbox = await SandboxControl.start(settings, tuple(sandbox_flags), sandbox_env)
        try:
            settings = pointed_at(settings, sandbox.url)
            async with _broker_side(name, settings, sandbox) as run:
                ledger = Path(scratch) / "ledger.db"
                for index in range(workers):
                    env = worker_environment(settings, index, free_port(), ledger, worker_env)
                    run.workers.append(WorkerProcess(env, int(env["RECALLS_METRICS_PORT"])))
                try:
                    await _start_all(run.workers)
                    run.rss_mb_start = max(worker.rss_mb() for worker in run.workers) if run.workers else 0.0
                    run.started_at = time.time()
                    yield run
                finally:
                    await asyncio.gather(*(worker.kill(signal.SIGTERM) for worker in run.workers))
        finally:
            await sandbox.stop()
            await _forget_coordination(settings)


async def _start_all(workers: Sequence[WorkerProcess]) -> None:
    """Start every worker; when one fails, only after the others have started (so none is orphaned)."""
    started = await asyncio.gather(*(worker.start() for worker in workers), return_exceptions=True)
    for failure in started:
        if isinstance(failure, BaseException):
            raise failure


async def _forget_coordination(settings: Settings) -> None:
    """Delete the run's keys in Redis (rate windows, token); they would expire, but later."""
    if settings.redis_url is None:
        return
    client = redis_client(settings)
    try:
        async with asyncio.timeout(10):
            keys = [key async for key in client.scan_iter(match=f"{settings.prefix}:*")]
            if keys:
                await client.delete(*keys)
    except (TimeoutError, RedisError, OSError):
        pass  # Redis away (a scenario stopped it): the keys expire by themselves
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _broker_side(name: str, settings: Settings, sandbox: SandboxControl) -> AsyncIterator[FaultRun]:
    """The run's connection, topology, outcome queue and publisher; all deleted afterwards."""
    topology = Topology(settings.prefix, settings.retry_tiers)
    connection = await connect(settings.amqp_url.get_secret_value(), name=f"faults-{settings.prefix}")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare(channel, topology)
        try:
            async with Publisher.on_connection(connection, topology, declare=True) as publisher:
                run = FaultRun(
                    name,
                    settings=settings,
                    sandbox=sandbox,
                    connection=connection,
                    channel=channel,
                    publisher=publisher,
                )
                queue = await channel.declare_queue(run.outcome_queue, durable=True, arguments=_QUORUM)
                await queue.bind(topology.events_exchange, routing_key="#")
                tag = await queue.consume(run.collected.on_message)
                try:
                    yield run
                finally:
                    await queue.cancel(tag)  # before its queue goes, which the broker would report
        finally:
            cleanup = await connection.channel()
            await cleanup.queue_delete(f"{settings.prefix}.faults.outcomes")
            await delete(cleanup, topology)
