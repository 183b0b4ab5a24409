"""Soak: the fleet at the full 100 requests/s (25 per verb) for 30 minutes, watched for slow leaks.

The fixes and deletes act on recalls seeded in the sandbox beforehand, so every verb runs at its limit
from the first second without waiting for creates.  Commands are published at 25 per verb per second,
after two seconds' worth up front, so the queues never run dry.  Every ten seconds each worker's RSS,
asyncio tasks and open file descriptors are read, and every minute the broker's client connections.
Promises: 429s 0, lost 0, memory flat, no growth in connections, tasks or file descriptors.

Each delivery in hand holds three tasks (aio-pika's consumer task, the in-flight tracker awaiting its
handler, and the handler), so tasks are counted net of three per command in flight: a soak fed at
exactly the limit fills the prefetch slowly as its backlog grows.  (A task dump of three workers in a
15-minute soak read three tasks for each of 128 commands in flight and 15 to 45 others, flat from start
to end.)  Tasks and descriptors rise and fall with the load (a burst of calls opens pooled connections
that close once idle), and the pools themselves fill as concurrency first demands them (open
descriptors went from 30 to 34 in the first five minutes of that soak, then stayed there), so one
reading says little: the start is judged by the median
of its readings over a window once the first quarter of the run is over, the end by the median over its
last window.  A leak lifts the later median; a burst or a pool filling does not.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.faults.figures import Figures
from bench.faults.harness import FaultRun, Mode, fault_run, fresh_database
from bench.faults.workload import Workload
from bench.fleet_throughput import FIXED_ON, REFERENCE, START, arrival_rate, seed, vin
from recalls.shared.contracts import Command, CreateCommand, DeleteCommand, FixCommand, GetCommand

PER_VERB = 25  # DVSA's limit: commands of each verb published per second
PRIMING = 2  # seconds' worth published up front
WARM_UP = 60.0  # s before the baseline reading: imports, pools and caches settle
SETTLE_SHARE = 0.25  # ...or this share of the run, if longer: pools fill as concurrency first demands
TASKS_PER_DELIVERY = 3  # the consumer's task, the in-flight tracker and the handler of each command
READ_EVERY, BROKER_EVERY = 10.0, 60.0
WINDOW = 120.0  # s of readings whose median stands for the start (after the warm-up) or the end
RSS_GROWTH = 0.10  # a worker's RSS may end at most this much above its baseline ("flat")
HANDLES_GROWTH = 3  # tasks or file descriptors a worker may end above its baseline


async def run(mode: Mode) -> Figures:
    seconds = mode.size(60, 1800)
    tag = uuid.uuid4().hex[:6]
    journal = str(4 * PER_VERB * (seconds + PRIMING) + 10_000)
    # The store in PostgreSQL, as for a fleet on several hosts: with one shared SQLite file, each
    # connection's page cache (2 MB) fills as the ledger grows, which would read as a slow leak.
    async with (
        fresh_database("soak") as store,
        fault_run(
            "soak",
            workers=3,
            sandbox_flags=("--journal-size", journal),
            worker_env={"RECALLS_DATABASE_URL": store},
        ) as fleet,
    ):
        async with httpx.AsyncClient(base_url=fleet.sandbox.url, timeout=60) as admin:
            targets = PER_VERB * (seconds + PRIMING)
            await seed(admin, [vin(tag, kind, n) for kind in "FD" for n in range(targets)])
        watch = Watch(fleet)
        watching = asyncio.create_task(watch.run())
        try:
            commands = await _feed(fleet, tag, seconds)
            await fleet.wait_for_outcomes({c.message_id for c in commands}, timeout=180)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        rates = _rates(await fleet.sandbox.requests())
        figures = await fleet.figures(Workload.of(commands))
    figures.mode = mode.name
    figures.extra |= watch.summary(seconds) | {"steady_rate_per_verb": rates}
    _judge(figures)
    return figures


async def _feed(fleet: FaultRun, tag: str, seconds: int) -> list[Command]:
    """Publish PER_VERB of each verb per second for ``seconds`` (after PRIMING seconds' worth)."""
    published: list[Command] = []
    started = time.monotonic()
    for second in range(seconds + PRIMING):
        batch = _second_of(tag, second)
        await fleet.publish(batch)
        published += batch
        if second >= PRIMING:
            await asyncio.sleep(max(0.0, started + second - PRIMING + 1 - time.monotonic()))  # the pace
    return published


def _second_of(tag: str, second: int) -> list[Command]:
    batch: list[Command] = []
    for n in range(second * PER_VERB, (second + 1) * PER_VERB):
        created = vin(tag, "C", n)
        batch += [
            CreateCommand(
                vin=created, manufacturer_campaign_reference=REFERENCE, recall_campaign_start_date=START
            ),
            FixCommand(
                vin=vin(tag, "F", n), manufacturer_campaign_reference=REFERENCE, rectification_date=FIXED_ON
            ),
            DeleteCommand(vin=vin(tag, "D", n), manufacturer_campaign_reference=REFERENCE),
            GetCommand(vin=vin(tag, "C", max(0, n - PER_VERB * 5))),  # created a few seconds earlier
        ]
    return batch


class Watch:
    """Readings of every worker over the run: RSS, asyncio tasks, open fds; and broker connections."""

    def __init__(self, fleet: FaultRun) -> None:
        self._fleet = fleet
        self._started = time.monotonic()
        self.rss: list[tuple[float, list[float]]] = []
        self.handles: list[tuple[float, list[dict[str, float]]]] = []
        self.connections: list[tuple[float, int]] = []

    async def run(self) -> None:
        next_broker = 0.0
        while True:
            now = time.monotonic() - self._started
            self.rss.append((now, [worker.rss_mb() for worker in self._fleet.workers]))
            readings = await asyncio.gather(*(_handles(w.metrics_port) for w in self._fleet.workers))
            self.handles.append((now, list(readings)))
            if now >= next_broker:
                self.connections.append((now, await _broker_connections()))
                next_broker = now + BROKER_EVERY
            await asyncio.sleep(READ_EVERY)  # a sampling cadence, not a wait for an event

    def summary(self, seconds: int) -> dict[str, Any]:
        warm = settled(seconds)
        window = min(WINDOW, seconds / 4)
        baseline = _at_or_after(self.rss, warm)
        return {
            "seconds": seconds,
            "rss_mb_baseline": baseline,
            "rss_mb_end": self.rss[-1][1] if self.rss else [],
            "rss_mb_max": [max(r[1][i] for r in self.rss) for i in range(len(baseline))],
            "tasks": _medians(self.handles, "tasks", warm, window),
            "open_fds": _medians(self.handles, "fds", warm, window),
            "broker_connections": {
                "start": self.connections[0][1] if self.connections else None,
                "end": self.connections[-1][1] if self.connections else None,
            },
            "rss_samples": [(round(t), mb) for t, mb in self.rss],
        }


def settled(seconds: float) -> float:
    """Seconds into a run of ``seconds`` when its baseline readings start."""
    return max(min(WARM_UP, seconds / 2), seconds * SETTLE_SHARE)


def _at_or_after(series: Sequence[tuple[float, Any]], at: float) -> Any:
    later = [value for t, value in series if t >= at]
    return later[0] if later else (series[-1][1] if series else [])


def _medians(
    series: Sequence[tuple[float, list[dict[str, float]]]], key: str, warm: float, window: float
) -> dict[str, list[float]]:
    """Per worker, the median of ``key`` over ``window`` s after ``warm``, and over the last ``window`` s."""
    if not series:
        return {"baseline": [], "end": []}
    last = series[-1][0]
    start = [readings for t, readings in series if warm <= t <= warm + window] or [series[0][1]]
    end = [readings for t, readings in series if t >= last - window]

    def per_worker(readings: list[list[dict[str, float]]]) -> list[float]:
        return [statistics.median(r[i][key] for r in readings) for i in range(len(readings[0]))]

    return {"baseline": per_worker(start), "end": per_worker(end)}


async def _handles(port: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    values = {
        s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels
    }
    return {"tasks": tasks_beside_deliveries(values), "fds": values.get("process_open_fds", -1.0)}


def tasks_beside_deliveries(values: Mapping[str, float]) -> float:
    """A worker's asyncio tasks other than those of the commands it has in hand."""
    in_flight = values.get("recalls_commands_in_flight", 0.0)
    return values.get("recalls_asyncio_tasks", -1.0) - TASKS_PER_DELIVERY * in_flight


async def _broker_connections() -> int:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", "list_connections", "name",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await process.communicate()
    return len([line for line in out.decode().splitlines() if line.strip()])


def _rates(journal: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per verb: calls per second at DVSA over the middle 80% of the run, and its share of the limit."""
    rates: dict[str, Any] = {}
    for verb in ("create", "fix", "delete", "get"):
        arrivals = sorted(entry["arrival"] for entry in journal if entry["verb"] == verb)
        tenth = len(arrivals) // 10
        steady, _ = arrival_rate(arrivals[tenth : len(arrivals) - tenth])
        rates[verb] = {"per_second": round(steady, 2), "share_of_limit": round(steady / PER_VERB, 4)}
    return rates


def _judge(figures: Figures) -> None:
    for problem in growth(figures.extra):
        figures.problem(problem)


def growth(extra: dict[str, Any]) -> list[str]:
    """What grew past its allowance between the start and the end of the run, per worker."""
    problems: list[str] = []
    for i, (base, end) in enumerate(zip(extra["rss_mb_baseline"], extra["rss_mb_end"], strict=False)):
        if end > base * (1 + RSS_GROWTH):
            problems.append(f"worker {i} RSS grew from {base:.1f} to {end:.1f} MB")
    for name in ("tasks", "open_fds"):
        for i, (base, end) in enumerate(zip(extra[name]["baseline"], extra[name]["end"], strict=False)):
            if end > base + HANDLES_GROWTH:
                problems.append(f"worker {i} {name} grew from {base:g} to {end:g}")
    return problems
