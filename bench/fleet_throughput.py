"""The fleet draining a deep backlog at DVSA's strict 25/s per verb: its pace, CPU and lone-command latency.

The CPU: what the workers spend per DVSA call, against what the sandbox spends per request.

1. Starts a DVSA sandbox process (strict sliding-window limit per verb, 429 beyond it) and seeds it,
   through ``POST /__admin/recalls``, with the recalls that the backlog's fixes, deletes and gets act on.
2. Publishes ``per_verb`` commands of each verb measured (``--verbs``; default create, fix, delete and
   get) with publisher confirms BEFORE any worker runs, so the queues are deep, and times the publishing.
3. Starts N ``recalls worker`` processes and waits for every outcome event on ``<prefix>.events``.
   Each worker's CPU time (``/proc/<pid>/stat``: user + system, its own and its children's) is read when
   it logs "worker consuming" and again when the drain completes; the sandbox's CPU time when the first
   worker consumes and when the drain completes.
4. Reads the sandbox's stats and request journal (stamped at arrival, where DVSA counts): per verb the
   calls, 429s, the most arrivals in any one-second window, the rate from the verb's first arrival to
   its last, and the steady rate over the middle 80% of its arrivals (past the fleet's start-up, when
   eight processes import and connect on the same cores), as a share of the limit.  The DVSA calls the
   sandbox counted by then give the workers' CPU per call and the sandbox's CPU per request.
5. With the workers still running and the queues empty, publishes single commands ~100 ms apart and
   measures publish-to-DVSA latency (sandbox arrival minus the time just before publishing).

``--redis URL`` passes ``RECALLS_REDIS_URL`` to the workers (fleet mode: one budget for all); N > 1
processes need it, as a second local-mode worker on a prefix refuses to start.  ``--database-url URL``
passes ``RECALLS_DATABASE_URL`` (a PostgreSQL store); without it the workers use that variable if it
is set, else a scratch SQLite file.  The report names the store, never its URL.

    .venv/bin/python bench/fleet_throughput.py [--processes 1] [--per-verb 2000] [--redis URL]
        [--database-url URL] [--verbs create,fix,delete,get] [--lane bulk|background]
        [--samples 200] [--gap-ms 100]

With ``--lane bulk`` (or ``background``) the backlog goes to that lane and step 5 runs while it drains:
the latency of live commands behind a bulk load (or a sweep) at the full rate.  Its commands then reach
DVSA during the CPU window too, and are counted among its calls.

Prints the figures and writes them to
``bench/results/fleet_throughput-<N>p[-redis][-pg][-<lane>][-<verbs joined by +>].json`` (the verbs only
when not all four).  Asserts nothing: a figure that misses its goal is reported, not failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from recalls.cli import sandbox_process
from recalls.cli.main import recalls_command
from recalls.cli.sandbox_process import credential_env, pointed_at
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.amqp import connect
from recalls.shared.contracts import (
    VERBS,
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    Lane,
    OutcomeEvent,
    Verb,
)
from recalls.shared.settings import Settings, load_settings
from recalls.shared.topology import LANES, Topology, declare, delete

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REFERENCE = "BENCH-1"
START = dt.date(2025, 1, 6)
FIXED_ON = dt.date(2025, 3, 3)  # after START, so DVSA accepts every fix
GOAL_SHARE = 0.98
GOAL_WORKER_MS_PER_CALL = 3.0  # worker CPU per DVSA call (issue 17)
GOAL_CPU_RATIO = 2.5  # worker CPU per DVSA call against the sandbox's CPU per request, in the same run
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's CPU times
PUBLISH_IN_FLIGHT = 1000
SEED_CHUNK = 500  # recalls per seed request: well under aiohttp's 1 MiB body limit
WORKER_ENTRY = "from recalls.cli.main import main; main()"  # what ``recalls worker`` runs
Json = dict[str, Any]


@dataclass(frozen=True)
class Options:
    processes: int
    per_verb: int
    redis: str | None
    samples: int
    gap: float  # seconds between latency samples
    lane: Lane  # of the backlog; with any but live, live latency is measured while it drains
    verbs: tuple[Verb, ...] = VERBS  # of the backlog, in VERBS' order
    database_url: str | None = field(default=None, repr=False)  # never in the report: it may hold a password

    def for_report(self) -> Json:
        """The options as the report records them: without the database URL."""
        return {
            "processes": self.processes,
            "per_verb": self.per_verb,
            "redis": self.redis,
            "samples": self.samples,
            "gap": self.gap,
            "lane": self.lane,
            "verbs": list(self.verbs),
        }


def parse_verbs(text: str) -> tuple[Verb, ...]:
    """``create,delete`` -> ("create", "delete"): a subset of VERBS, in VERBS' order."""
    named = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(named - set(VERBS))
    if unknown or not named:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(VERBS)}, got {text!r}"
        )
    return tuple(verb for verb in VERBS if verb in named)


def store_name(database_url: str | None) -> str:
    """The workers' store: PostgreSQL when a database URL reaches them, else SQLite."""
    return "postgresql" if database_url or os.environ.get("RECALLS_DATABASE_URL") else "sqlite"


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--per-verb", type=int, default=2000, help="backlog commands per verb")
    parser.add_argument("--redis", default=None, help="RECALLS_REDIS_URL for the workers (fleet mode)")
    parser.add_argument("--samples", type=int, default=200, help="commands in the latency phase")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="spacing of latency samples (ms)")
    parser.add_argument(
        "--lane",
        choices=LANES,
        default="live",
        help="the backlog's lane; with bulk or background, live latency is measured while it drains",
    )
    parser.add_argument(
        "--verbs",
        type=parse_verbs,
        default=VERBS,
        help="comma-separated verbs of the backlog: a subset of create,fix,delete,get (default all four)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="RECALLS_DATABASE_URL for the workers: a PostgreSQL store (default: the variable if set, "
        "else a scratch SQLite file)",
    )
    args = parser.parse_args(argv)
    if args.processes < 1 or args.per_verb < 1 or args.samples < 1:
        parser.error("--processes, --per-verb and --samples must be at least 1")
    if args.processes > 1 and args.redis is None:
        parser.error("--processes above 1 needs --redis: a second local-mode worker refuses to start")
    return Options(
        args.processes,
        args.per_verb,
        args.redis,
        args.samples,
        args.gap_ms / 1000,
        args.lane,
        args.verbs,
        args.database_url,
    )


# --- the work -------------------------------------------------------------------------------------


def vin(tag: str, kind: str, n: int) -> str:
    """A unique 17-character VIN: the run's tag, a letter for what it is used for, a serial number."""
    return f"{tag[:6].upper()}{kind}{n:010d}"


def seed_items(vins: Sequence[str]) -> list[Json]:
    start = START.isoformat()
    return [
        {"vin": v, "manufacturerCampaignReference": REFERENCE, "recallCampaignStartDate": start} for v in vins
    ]


def backlog(tag: str, per_verb: int, verbs: Iterable[Verb] = VERBS) -> tuple[list[str], list[Command]]:
    """The VINs to seed and ``per_verb`` commands of each of ``verbs``, interleaved.

    Fixes and gets act on the same seeded VINs, deletes on VINs of their own; creates need no seed.
    """
    chosen = set(verbs)
    fixes = [vin(tag, "F", n) for n in range(per_verb)] if chosen & {"fix", "get"} else []
    deletes = [vin(tag, "D", n) for n in range(per_verb)] if "delete" in chosen else []
    commands: list[Command] = []
    for n in range(per_verb):
        if "create" in chosen:
            commands.append(
                CreateCommand(
                    vin=vin(tag, "C", n),
                    manufacturer_campaign_reference=REFERENCE,
                    recall_campaign_start_date=START,
                )
            )
        if "fix" in chosen:
            commands.append(
                FixCommand(
                    vin=fixes[n], manufacturer_campaign_reference=REFERENCE, rectification_date=FIXED_ON
                )
            )
        if "delete" in chosen:
            commands.append(DeleteCommand(vin=deletes[n], manufacturer_campaign_reference=REFERENCE))
        if "get" in chosen:
            commands.append(GetCommand(vin=fixes[n]))
    return fixes + deletes, commands


def latency_commands(tag: str, samples: int) -> list[Command]:
    """Fixes, deletes and gets in turn, each on its own seeded VIN, so the journal path names it.

    No creates: a create's VIN travels in its body, not its path, so the journal cannot match it.
    """
    commands: list[Command] = []
    for n in range(samples):
        target = vin(tag, "L", n)
        match n % 3:
            case 0:
                commands.append(GetCommand(vin=target))
            case 1:
                commands.append(
                    FixCommand(
                        vin=target, manufacturer_campaign_reference=REFERENCE, rectification_date=FIXED_ON
                    )
                )
            case _:
                commands.append(DeleteCommand(vin=target, manufacturer_campaign_reference=REFERENCE))
    return commands


# --- outcome events -------------------------------------------------------------------------------


@dataclass
class Outcomes:
    """Outcome events from a queue bound to ``<prefix>.events`` with ``#``, by message_id."""

    events: dict[str, OutcomeEvent] = field(default_factory=dict)
    last_at: float = 0.0  # time.time() of the newest event
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            event = msgspec.json.decode(message.body, type=OutcomeEvent)
            self.events[event.message_id] = event
            self.last_at = time.time()
            self.changed.set()

    async def wait_for(self, wanted: set[str], within: float) -> bool:
        """True once every wanted message_id has an event; False after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not wanted <= self.events.keys():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


async def subscribe(channel: AbstractChannel, topology: Topology) -> Outcomes:
    outcomes = Outcomes()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.events_exchange, routing_key="#")
    await queue.consume(outcomes.on_message)
    return outcomes


# --- CPU time -------------------------------------------------------------------------------------


def stat_fields(stat: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` line after the command name, from field 3 (state) on.

    The name is in parentheses and may itself hold spaces and parentheses: split after the last ")".
    """
    return stat[stat.rindex(")") + 1 :].split()


def stat_cpu_seconds(stat: str) -> float:
    """utime + stime + cutime + cstime (fields 14-17) of a ``/proc/<pid>/stat`` line, in seconds.

    cutime and cstime hold the children the process has waited for; its threads are in utime and stime.
    """
    return sum(int(ticks) for ticks in stat_fields(stat)[11:15]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float | None:
    """The CPU seconds of a process and its live descendants (theirs and their reaped children's).

    None if the process is gone.  A child that exits between two readings is counted both times: alive
    in the first, in its parent's cutime and cstime in the second.
    """
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        parents[int(entry)] = int(stat_fields(stat)[1])
        seconds[int(entry)] = stat_cpu_seconds(stat)
    if pid not in seconds:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, its_parent in parents.items() if its_parent == parent]
        tree.update(children)
        frontier += children
    return sum(seconds[member] for member in tree)


# --- worker processes -----------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: asyncio.subprocess.Process
    ready_at: float  # time.time() when it logged "worker consuming"
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    reader: asyncio.Task[None] | None = None
    cpu_at_ready: float | None = None  # its CPU seconds when it logged "worker consuming"
    sandbox_cpu_at_ready: float | None = None  # the sandbox's at that moment, if its pid was given

    async def read_rest(self) -> None:
        """Keep reading stderr (a full pipe would block the worker's logging); keep the last lines."""
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.tail.append(line.decode(errors="replace").rstrip())


def worker_env(settings: Settings, redis: str | None, database_url: str | None = None) -> dict[str, str]:
    """The workers' environment: this one's, the sandbox's credentials and location, Redis if given, and
    ``database_url`` as RECALLS_DATABASE_URL if given (else RECALLS_DATABASE_URL as it is here)."""
    env = {name: value for name, value in os.environ.items() if name != "RECALLS_REDIS_URL"}
    env |= credential_env(settings) | {
        "RECALLS_PREFIX": settings.prefix,
        "RECALLS_SANDBOX_HOST": settings.sandbox_host,
        "RECALLS_SANDBOX_PORT": str(settings.sandbox_port),
    }
    if redis is not None:
        env["RECALLS_REDIS_URL"] = redis
    if database_url is not None:
        env["RECALLS_DATABASE_URL"] = database_url
    return env


async def start_worker(env: dict[str, str], sandbox_pid: int | None = None) -> WorkerProcess:
    """Start ``recalls worker``; return once it consumes, with its CPU time (and the sandbox's) then."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER_ENTRY, "worker",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    seen: deque[str] = deque(maxlen=20)
    async with asyncio.timeout(60):
        while b"worker consuming" not in (line := await process.stderr.readline()):
            if not line:
                raise RuntimeError("a worker exited before consuming:\n" + "\n".join(seen))
            seen.append(line.decode(errors="replace").rstrip())
    worker = WorkerProcess(process, time.time(), seen, cpu_at_ready=cpu_seconds(process.pid))
    if sandbox_pid is not None:
        worker.sandbox_cpu_at_ready = cpu_seconds(sandbox_pid)
    worker.reader = asyncio.create_task(worker.read_rest())
    return worker


async def stop_workers(workers: Sequence[WorkerProcess]) -> list[int]:
    """SIGTERM every worker, wait for it to finish its in-flight commands; return the exit codes."""
    for worker in workers:
        if worker.process.returncode is None:
            worker.process.send_signal(signal.SIGTERM)
    codes = []
    for worker in workers:
        try:
            codes.append(await asyncio.wait_for(worker.process.wait(), 60))
        except TimeoutError:
            worker.process.kill()
            codes.append(await worker.process.wait())
        if worker.reader is not None:
            await worker.reader
    return codes


async def migrate(env: dict[str, str]) -> None:
    """``recalls migrate`` in the workers' environment, as an operator runs it before a rollout."""
    process = await asyncio.create_subprocess_exec(
        *recalls_command("migrate"), env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        raise RuntimeError(f"recalls migrate exited {process.returncode}: {err.decode(errors='replace')}")


@contextlib.asynccontextmanager
async def running_workers(
    settings: Settings, options: Options, sandbox_pid: int | None = None
) -> AsyncIterator[list[WorkerProcess]]:
    env = worker_env(settings, options.redis, options.database_url)
    await migrate(env)
    # As ``recalls worker --processes N`` does: the first process alone keeps the ledger.
    envs = [env] + [{**env, "RECALLS_RECORD_EVENTS": "false"}] * (options.processes - 1)
    started = await asyncio.gather(*(start_worker(e, sandbox_pid) for e in envs), return_exceptions=True)
    workers = [w for w in started if isinstance(w, WorkerProcess)]
    try:
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        yield workers
    finally:
        codes = await stop_workers(workers)
        for worker, code in zip(workers, codes, strict=True):
            if code != 0:
                print(f"worker exited {code}; its last lines:\n  " + "\n  ".join(worker.tail))


# --- the sandbox's figures ------------------------------------------------------------------------


async def seed(admin: httpx.AsyncClient, vins: Sequence[str]) -> None:
    for start in range(0, len(vins), SEED_CHUNK):
        response = await admin.post("/__admin/recalls", json=seed_items(vins[start : start + SEED_CHUNK]))
        response.raise_for_status()


async def sandbox_view(admin: httpx.AsyncClient, limit: int | None = None) -> tuple[Json, list[Json]]:
    """The stats and the journal (oldest first; the newest ``limit`` entries if given)."""
    stats = (await admin.get("/__admin/stats")).raise_for_status().json()
    params = {"limit": str(limit)} if limit is not None else {}
    journal = (await admin.get("/__admin/requests", params=params)).raise_for_status().json()
    assert isinstance(stats, dict) and isinstance(journal, list)
    return stats, journal


def verb_figures(verb: str, stats: Json, journal: list[Json], limit: int) -> Json:
    """Calls, 429s, busiest second, the rate over all arrivals and over the middle 80% of them."""
    arrivals = sorted(entry["arrival"] for entry in journal if entry["verb"] == verb)
    tenth = len(arrivals) // 10
    overall, _ = arrival_rate(arrivals)
    rate, span = arrival_rate(arrivals[tenth : len(arrivals) - tenth])
    figures = stats[verb]
    return {
        "calls": figures["count"],
        "journaled": len(arrivals),  # fewer than calls: the bounded journal forgot the oldest
        "throttled_429": figures["throttled"],
        "statuses": figures["statuses"],
        "max_in_window": figures["max_in_window"],
        "overall_rate_per_s": round(overall, 3),
        "steady_span_s": round(span, 3),
        "steady_rate_per_s": round(rate, 3),
        "share_of_limit": round(rate / limit, 4),
    }


def arrival_rate(arrivals: list[float]) -> tuple[float, float]:
    """The rate of sorted arrivals and the span it was measured over."""
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    # n arrivals spaced evenly over the span make n - 1 intervals: (n - 1) / span is their rate.
    return ((len(arrivals) - 1) / span if span > 0 else 0.0), span


def result_counts(events: Sequence[OutcomeEvent], verbs: Iterable[Verb] = VERBS) -> dict[str, Json]:
    counts: dict[str, Json] = {}
    for verb in verbs:
        mine = [event for event in events if event.verb == verb]
        counts[verb] = dict(Counter(event.result for event in mine)) | {
            "retried": sum(event.attempts > 1 for event in mine)
        }
    return counts


def code_version() -> Json:
    """The commit measured, and the tracked files that differ from it (the tree may be mid-edit)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603, S607
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": git("diff", "--name-only", "HEAD").split(),
    }


# --- the phases -----------------------------------------------------------------------------------


async def publish_backlog(publisher: Publisher, commands: list[Command], lane: Lane) -> Json:
    started = time.perf_counter()
    results = await publisher.publish_many(commands, lane=lane, max_in_flight=PUBLISH_IN_FLIGHT)
    seconds = time.perf_counter() - started
    failed = [result for result in results if not isinstance(result, str)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(commands)} publishes failed, e.g. {failed[0]!r}")
    return {
        "commands": len(commands),
        "seconds": round(seconds, 3),
        "per_s": round(len(commands) / seconds, 1),
    }


async def drain(
    outcomes: Outcomes, commands: list[Command], workers: list[WorkerProcess], within: float
) -> Json:
    complete = await outcomes.wait_for({c.message_id for c in commands}, within)
    started = min(worker.ready_at for worker in workers)
    return {
        "complete": complete,
        "outcomes": sum(c.message_id in outcomes.events for c in commands),
        "wall_s": round(outcomes.last_at - started, 3) if outcomes.last_at else None,  # None: no outcome
    }


async def measure_latency(
    publisher: Publisher, admin: httpx.AsyncClient, outcomes: Outcomes, commands: list[Command], gap: float
) -> Json:
    """Publish one command every ``gap`` seconds; latency = its first DVSA arrival - time before publish."""
    published: dict[tuple[str, str], float] = {}
    loop, begin = asyncio.get_running_loop(), asyncio.get_running_loop().time()
    for index, command in enumerate(commands):
        await asyncio.sleep(max(0.0, begin + index * gap - loop.time()))
        published[command.verb, f"/recalls/vin/{command.vin}"] = time.time()
        await publisher.publish(command)
    complete = await outcomes.wait_for({c.message_id for c in commands}, within=60 + len(commands) * gap)
    _, journal = await sandbox_view(admin)
    arrived: dict[tuple[str, str], float] = {}
    for entry in journal:  # oldest first: setdefault keeps each command's first arrival
        arrived.setdefault((entry["verb"], entry["path"]), entry["arrival"])
    latencies = [(arrived[key] - sent) * 1000 for key, sent in published.items() if key in arrived]
    return {"complete": complete, "samples": len(latencies), "gap_ms": gap * 1000} | percentiles(latencies)


def cpu_figures(
    workers: Sequence[WorkerProcess],
    workers_at_end: Sequence[float | None],
    sandbox_at_end: float | None,
    stats: Json,
    *,
    latency_beside: bool,
) -> Json:
    """Worker CPU per DVSA call and sandbox CPU per request, from each worker's readiness (the sandbox's
    from the first worker's) to the drain's end; None where a process was gone before it was read.

    The calls are the sandbox's count of each verb when the drain has ended: every one since it started,
    as no worker runs before the first is ready.  With ``latency_beside`` the latency phase's commands
    (and its reads of the sandbox's journal) fall in the window too.
    """
    first = min(workers, key=lambda worker: worker.ready_at)
    per_worker = [
        None if start is None or end is None else end - start
        for start, end in zip((worker.cpu_at_ready for worker in workers), workers_at_end, strict=True)
    ]
    worker_s = None if None in per_worker else sum(s for s in per_worker if s is not None)
    sandbox_start = first.sandbox_cpu_at_ready
    sandbox_s = None if sandbox_start is None or sandbox_at_end is None else sandbox_at_end - sandbox_start
    calls = sum(stats[verb]["count"] for verb in VERBS)
    requests = calls + stats["token_requests"]
    worker_ms = None if worker_s is None or calls == 0 else 1000 * worker_s / calls
    sandbox_ms = None if sandbox_s is None or requests == 0 else 1000 * sandbox_s / requests
    ratio = None if worker_ms is None or not sandbox_ms else worker_ms / sandbox_ms
    return {
        "window": "each worker from its readiness, the sandbox from the first's, to the drain's end",
        "latency_phase_inside": latency_beside,
        "clock_ticks_per_s": CLOCK_TICKS,
        "worker_s": _rounded(worker_s, 3),
        "per_worker_s": [_rounded(seconds, 3) for seconds in per_worker],
        "dvsa_calls": calls,
        "worker_ms_per_call": _rounded(worker_ms, 4),
        "goal_worker_ms_per_call": GOAL_WORKER_MS_PER_CALL,
        "sandbox_s": _rounded(sandbox_s, 3),
        "sandbox_requests": requests,
        "sandbox_ms_per_request": _rounded(sandbox_ms, 4),
        "worker_to_sandbox": _rounded(ratio, 3),
        "goal_worker_to_sandbox": GOAL_CPU_RATIO,
    }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def percentiles(latencies_ms: list[float]) -> Json:
    if len(latencies_ms) < 2:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "max_ms": round(max(latencies_ms), 2)}


async def run(options: Options) -> Json:
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as scratch:
        # The workers' ledger: a scratch SQLite file, unless RECALLS_DATABASE_URL names a database.
        os.environ.setdefault("RECALLS_SQLITE_PATH", str(Path(scratch) / "ledger.db"))
        settings = load_settings(prefix=f"bench-{tag}")
        async with sandbox_broker_and_pid(settings) as (settings, admin, channel, sandbox_pid):
            return await run_phases(options, settings, tag, admin, channel, sandbox_pid=sandbox_pid)


@contextlib.asynccontextmanager
async def sandbox_and_broker(
    settings: Settings,
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient, AbstractChannel]]:
    """A sandbox, an admin client for it, and a channel with the prefix's topology (deleted after)."""
    async with sandbox_broker_and_pid(settings) as (pointed, admin, channel, _):
        yield pointed, admin, channel


@contextlib.asynccontextmanager
async def sandbox_broker_and_pid(
    settings: Settings,
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient, AbstractChannel, int]]:
    """As ``sandbox_and_broker``, and the sandbox's process id (to read its CPU time)."""
    topology = Topology(settings.prefix, settings.retry_tiers)
    # recalls.cli.sandbox_process.sandbox_process, with the process at hand.
    url, process = await asyncio.to_thread(sandbox_process.start, settings)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as admin:
            settings = pointed_at(settings, url)
            connection = await connect(settings.amqp_url.get_secret_value(), name=f"bench-{settings.prefix}")
            async with connection:
                channel = await connection.channel()
                await declare(channel, topology)
                try:
                    yield settings, admin, channel, process.pid
                finally:
                    await delete(channel, topology)
    finally:
        await asyncio.to_thread(sandbox_process.stop, process)


async def run_phases(
    options: Options,
    settings: Settings,
    tag: str,
    admin: httpx.AsyncClient,
    channel: AbstractChannel,
    *,
    sandbox_pid: int,
) -> Json:
    targets, commands = backlog(tag, options.per_verb, options.verbs)
    await seed(admin, targets)
    outcomes = await subscribe(channel, Topology(settings.prefix, settings.retry_tiers))
    report: Json = {
        "options": options.for_report(),
        "store": store_name(options.database_url),  # the name only: the URL may hold a password
        "code": code_version(),
        "prefix": settings.prefix,
        "limit_per_verb": settings.rate_limit,
        "rate_margin": settings.rate_margin,  # the workers' too: same defaults and environment
    }
    latency = latency_commands(tag, options.samples)
    async with Publisher.connect(publisher_config(settings)) as publisher:
        report["publish"] = await publish_backlog(publisher, commands, options.lane)
        if options.lane != "live":
            await seed(admin, [command.vin for command in latency])
        async with running_workers(settings, options, sandbox_pid) as workers:
            timeout = options.per_verb / settings.rate_limit * 2 + 60
            during = (
                asyncio.create_task(measure_latency(publisher, admin, outcomes, latency, options.gap))
                if options.lane != "live"
                else None
            )
            report["drain"] = await drain(outcomes, commands, workers, timeout)
            # Before sandbox_view: serialising a journal of thousands of requests costs the sandbox CPU.
            workers_at_end = [cpu_seconds(worker.process.pid) for worker in workers]
            sandbox_at_end = cpu_seconds(sandbox_pid)
            stats, journal = await sandbox_view(admin)
            report["verbs"] = {v: verb_figures(v, stats, journal, settings.rate_limit) for v in options.verbs}
            report["results"] = result_counts(
                [outcomes.events[c.message_id] for c in commands if c.message_id in outcomes.events],
                options.verbs,
            )
            report["tokens"] = {"requests": stats["token_requests"], "issued": stats["tokens_issued"]}
            report["cpu"] = cpu_figures(
                workers, workers_at_end, sandbox_at_end, stats, latency_beside=during is not None
            )
            if during is not None:
                report["latency"] = await during
            else:
                await seed(admin, [command.vin for command in latency])
                report["latency"] = await measure_latency(publisher, admin, outcomes, latency, options.gap)
    return report


# --- the report -----------------------------------------------------------------------------------


def goal_met(report: Json) -> bool:
    """Drained; no 429, at most the limit in any second and a steady rate of at least 98% of it, per
    verb; worker CPU per DVSA call within its goal, alone and against the sandbox's per request."""
    limit, cpu = report["limit_per_verb"], report["cpu"]
    return (
        report["drain"]["complete"]
        and all(
            f["throttled_429"] == 0 and f["max_in_window"] <= limit and f["share_of_limit"] >= GOAL_SHARE
            for f in report["verbs"].values()
        )
        and cpu["worker_ms_per_call"] is not None
        and cpu["worker_ms_per_call"] <= GOAL_WORKER_MS_PER_CALL
        and cpu["worker_to_sandbox"] is not None
        and cpu["worker_to_sandbox"] <= GOAL_CPU_RATIO
    )


def show(report: Json) -> None:
    options, limit, drain_ = report["options"], report["limit_per_verb"], report["drain"]
    mode = (
        f"fleet mode, Redis {options['redis']}"
        if options["redis"]
        else "local limiter per process (no Redis)"
    )
    ideal = options["per_verb"] / limit
    publish = report["publish"]
    store = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[report["store"]]
    print(f"\nfleet_throughput: {options['processes']} worker process(es), {mode}, {store} store")
    print(
        f"  backlog: {options['per_verb']} commands of each of {', '.join(options['verbs'])}, "
        f"limit {limit}/s per verb (strict, at arrival)"
    )
    code = report["code"]
    edits = f", uncommitted edits to {', '.join(code['modified'])}" if code["modified"] else ""
    print(f"  code:    {code['commit']}{edits}; rate margin {report['rate_margin']}")
    print(
        f"  publish: {publish['commands']} commands in {publish['seconds']:.2f} s ({publish['per_s']:.0f}/s)"
    )
    done = "" if drain_["complete"] else f"  INCOMPLETE: {drain_['outcomes']} outcomes"
    wall = "no outcome" if drain_["wall_s"] is None else f"{drain_['wall_s']:.1f} s wall"
    print(f"  drain:   {wall} (ideal {ideal:.1f} s at {limit}/s per verb){done}\n")
    header = "verb      calls   429  max/1s  all/s  steady/s  of limit  applied  already  failed  retried"
    print(header + "\n" + "-" * len(header))
    for verb in options["verbs"]:
        f, r = report["verbs"][verb], report["results"][verb]
        print(
            f"{verb:<8}{f['calls']:>7}{f['throttled_429']:>6}{f['max_in_window']:>8}{f['overall_rate_per_s']:>7.2f}"
            f"{f['steady_rate_per_s']:>10.2f}"
            f"{f['share_of_limit']:>10.1%}{r.get('applied', 0):>9}{r.get('already_applied', 0):>9}"
            f"{r.get('failed', 0):>8}{r['retried']:>9}"
        )
    tokens, latency = report["tokens"], report["latency"]
    print(f"\n  tokens:  {tokens['requests']} requested, {tokens['issued']} issued")
    lane = options["lane"]
    kind = f"live commands while the {lane} backlog drains," if lane != "live" else "lone commands"
    print(
        f"  latency: publish -> DVSA arrival, {latency['samples']} {kind} "
        f"{latency['gap_ms']:.0f} ms apart: p50 {latency['p50_ms']} ms, "
        f"p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms"
    )
    show_cpu(report["cpu"])
    verdict = "MET" if report["goal_met"] else "NOT MET"
    print(
        f"  goal (no 429, max/1s <= {limit}, steady >= {GOAL_SHARE:.0%} of {limit}/s per verb; worker CPU "
        f"<= {GOAL_WORKER_MS_PER_CALL:g} ms per DVSA call and <= {GOAL_CPU_RATIO:g}x the sandbox's per "
        f"request): {verdict}"
    )


def show_cpu(cpu: Json) -> None:
    def ms(value: float | None) -> str:
        return "?" if value is None else f"{value:.3f} ms"

    def seconds(value: float | None) -> str:
        return "? (a process was gone)" if value is None else f"{value:.2f} s"

    ratio = "?" if cpu["worker_to_sandbox"] is None else f"{cpu['worker_to_sandbox']:.2f}x"
    per_worker = ", ".join("?" if s is None else f"{s:.2f}" for s in cpu["per_worker_s"])
    print(
        f"  cpu:     workers {seconds(cpu['worker_s'])} (each: {per_worker}) for {cpu['dvsa_calls']} "
        f"DVSA calls: {ms(cpu['worker_ms_per_call'])} per call "
        f"(goal <= {cpu['goal_worker_ms_per_call']:g} ms)"
    )
    print(
        f"           sandbox {seconds(cpu['sandbox_s'])} for {cpu['sandbox_requests']} requests: "
        f"{ms(cpu['sandbox_ms_per_request'])} per request; workers / sandbox {ratio} "
        f"(goal <= {cpu['goal_worker_to_sandbox']:g}x)"
    )
    inside = " and the latency phase beside it (its commands counted)" if cpu["latency_phase_inside"] else ""
    print(f"           over the drain{inside}: each worker from its readiness to the drain's end")


def results_name(report: Json) -> str:
    """``fleet_throughput-<N>p[-redis][-pg][-<lane>][-<verbs joined by +>].json``."""
    options = report["options"]
    lane, verbs = options["lane"], options["verbs"]
    suffix = (
        ("-redis" if options["redis"] else "")
        + ("-pg" if report["store"] == "postgresql" else "")
        + ("" if lane == "live" else f"-{lane}")
        + ("" if list(verbs) == list(VERBS) else "-" + "+".join(verbs))
    )
    return f"fleet_throughput-{options['processes']}p{suffix}.json"


def save(report: Json) -> Path:
    path = RESULTS / results_name(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def main() -> None:
    options = parse_options()
    report = asyncio.run(run(options))
    report["goal_met"] = goal_met(report)
    report["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    show(report)
    print(f"  written: {save(report).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
