"""Broker connection loss: the broker closes every client connection, several times, then the workers' path to
it hangs (a TCP proxy stops forwarding but keeps the sockets open) and comes back.

The workers reach RabbitMQ through :class:`bench.faults.tcp_proxy.TcpProxy` with a short AMQP heartbeat,
since only missed heartbeats reveal a hang.  The harness's own connection (publisher and outcome
collector) goes straight to the broker and is closed by ``close_all_connections`` too; half the workload
is published only after the first close, so the publisher has to have recovered.  The promises: nothing
lost, and afterwards every worker consumes every command queue again, the event recorder its ledger queue,
and every worker publishes its live stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import aio_pika

from bench.faults.figures import Figures, Json
from bench.faults.harness import FaultRun, Mode, fault_run
from bench.faults.scenarios.outages import judge_lasting_fault, run_tool
from bench.faults.tcp_proxy import TcpProxy
from bench.faults.workload import Workload
from recalls.shared.contracts import VERBS
from recalls.shared.telemetry import decode_stats
from recalls.shared.topology import LANES

WORKERS = 3
HEARTBEAT_S = 3  # a hang is noticed by the broker after ~2 beats, by aiormq after 3 * (beat + 1) s
BROKER_HOST, BROKER_PORT = "127.0.0.1", 5672
CONSUMERS_PATIENCE = 30.0  # seconds the consumers have, after the last fault, to be all back


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(600, 3000))
    half = len(workload.commands) // 2
    proxy = TcpProxy(BROKER_HOST, BROKER_PORT)
    await proxy.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat={HEARTBEAT_S}"
    try:
        async with fault_run("broker", workers=WORKERS, worker_env={"RECALLS_AMQP_URL": url}) as fleet:
            await fleet.publish(workload.commands[:half])
            await asyncio.sleep(1.5)  # a cadence: let the fleet get to pace before the first fault
            closes = await _close_all(fleet, times=mode.size(2, 5), apart=mode.size(3, 5))
            await fleet.publish(workload.commands[half:])  # through a publisher that was cut off
            await _consumers_back(fleet)  # aio-pika waits up to 5 s between reconnects
            await asyncio.sleep(2)  # back to pace, so the hang has a baseline
            hang = await _hang(fleet, proxy, seconds=mode.size(10, 30))
            stalled = await fleet.stall(workload.message_ids, timeout=mode.size(90, 400))
            consumers = await _consumers_back(fleet)
            stats_from = await _stats_senders(fleet)
            figures = await fleet.figures(workload)
            journal = await fleet.sandbox.requests()
            judge_lasting_fault(figures, journal, *hang)
    finally:
        await proxy.close()
    figures.mode = mode.name
    figures.extra |= {
        "workers": WORKERS,
        "heartbeat_s": HEARTBEAT_S,
        "close_all_connections": closes,
        "hang_s": round(hang[1] - hang[0], 1),
        "dvsa_calls_during_hang": _calls_between(journal, *hang),
        "consumers": consumers,
        "stats_publishing_workers": stats_from,
    }
    _judge_consumers(figures, consumers, stats_from)
    if stalled:
        figures.problem(stalled)
    return figures


async def _close_all(fleet: FaultRun, *, times: int, apart: float) -> list[str]:
    """``rabbitmqctl close_all_connections`` ``times`` times, ``apart`` s apart; what rabbitmqctl said."""
    said: list[str] = []
    for n in range(times):
        if n:
            await asyncio.sleep(apart)  # the scenario's cadence, not a wait for an event
        fleet.fault(f"close_all_connections #{n + 1}")
        said.append(await _rabbitmqctl("close_all_connections", f"fault test {fleet.prefix} #{n + 1}"))
    return said


async def _hang(fleet: FaultRun, proxy: TcpProxy, *, seconds: float) -> tuple[float, float]:
    """Hang the workers' path to the broker for ``seconds``, then restore it; (began, ended) times."""
    fleet.fault(f"worker-broker path hung {seconds:g} s")
    began = fleet.fault_stamps[-1][1]
    proxy.hang()
    try:
        await asyncio.sleep(seconds)  # the length of the partition is the fault itself
    finally:
        await proxy.restore()
    return began, time.time()


def _calls_between(journal: Sequence[Json], began: float, ended: float) -> dict[str, int]:
    """The DVSA calls that arrived while the path was hung, by verb: work the broker will hand out again."""
    return dict(Counter(e["verb"] for e in journal if e["verb"] in VERBS and began <= e["arrival"] < ended))


async def _consumers_back(fleet: FaultRun) -> dict[str, int]:
    """Consumers per queue of the run once each command queue has one per worker (or the patience ran out)."""
    wanted = {fleet.topology.command_queue(verb, lane): WORKERS for verb in VERBS for lane in LANES}
    wanted[fleet.topology.ledger_queue] = 1  # only worker 0 records events
    deadline = time.monotonic() + CONSUMERS_PATIENCE
    while True:
        counts = await _consumer_counts(fleet.prefix)
        if all(counts.get(queue, 0) >= n for queue, n in wanted.items()) or time.monotonic() > deadline:
            return {queue.removeprefix(fleet.prefix + "."): counts.get(queue, 0) for queue in sorted(wanted)}
        await asyncio.sleep(1)  # rabbitmqctl is the only way to ask; no event to await


async def _consumer_counts(prefix: str) -> Counter[str]:
    listing = await _rabbitmqctl("--no-table-headers", "list_consumers", "queue_name")
    return Counter(line for line in listing.splitlines() if line.startswith(prefix + "."))


async def _stats_senders(fleet: FaultRun, *, listen: float = 3.0) -> int:
    """How many distinct workers publish live stats (to ``<prefix>.stats``) over ``listen`` s."""
    senders: set[str] = set()
    async with _connection() as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(fleet.topology.stats_exchange)

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            senders.add(decode_stats(message.body).worker)

        await queue.consume(take, no_ack=True)
        await asyncio.sleep(listen)  # stats come once a second: listen for a few
    return len(senders)


@contextlib.asynccontextmanager
async def _connection() -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}/")
    async with connection:
        yield connection


def _judge_consumers(figures: Figures, consumers: dict[str, int], stats_from: int) -> None:
    short = {queue: n for queue, n in consumers.items() if n < (1 if queue == "ledger" else WORKERS)}
    if short:
        figures.problem(f"consumers not back after the faults: {short}")
    if stats_from < WORKERS:
        figures.problem(f"live stats from {stats_from} of {WORKERS} workers after the faults")


async def _rabbitmqctl(*args: str) -> str:
    return await run_tool("rabbitmqctl", "-q", *args)
