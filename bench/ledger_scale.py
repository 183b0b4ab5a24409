"""The ledger at national scale: what reads and writes it cost when it holds millions of entries.

Against a PostgreSQL ledger of ``--entries`` generated entries (two campaigns per vehicle; a scratch
database made for the run and dropped after it unless ``--keep``), times what each command asks of
the store, beside its goal:

1. **sync**: the plan of ``recalls sync`` (:func:`recalls.producers.sync.plan_sync`, what ``--dry-run``
   prints) for a ``--snapshot``-row file in DVSA's CSV format: rows the ledger holds open (most), new
   rows (2%), bad rows (0.01%), and open recalls the file lacks (1% of it), which become fixes.  Run in a
   child process of its own, so its peak RSS (``ru_maxrss``, and samples every 0.25 s) is the plan's:
   goal at most 120 s and under 300 MB, flat whatever the ledger's size.  Not ``recalls sync`` itself,
   whose dry run still starts its publishing process and connects to RabbitMQ;
2. **status**: :meth:`Ledger.for_vin` (the one query of ``recalls status VIN``) in-process for random
   vehicles, p99 goal under 50 ms; and a few whole ``recalls status VIN --json`` processes, whose time
   is mostly the interpreter's start-up (shown, no goal);
3. **batch**: :meth:`VinChecks.fresh`, the batch API's look-up of a 10,000-VIN submit in the cache of
   checks (a check for every other vehicle, half of them fresh), goal under 2 s for the slowest of 3;
4. **reconcile**: :meth:`Ledger.vin_pages`, the vehicles a sweep publishes (all of them, and those
   changed in the last day), and :meth:`Ledger.for_vins`, the sweep's comparison reads a page of 1,000
   vehicles at a time: VINs per second, goal at least 250 (ten times the 25 GET/s a sweep spends);
   in a child process, for its peak RSS;
5. **recording**: outcome events (creates, fixes, deletes, whole-vehicle gets) written as the event
   recorder writes them: groups of ``--group`` events, each one transaction over the ledger
   (:meth:`Ledger.apply_within`), the batch journal and the cache of checks.  Goal at least 400 events/s.
   The rows it creates are deleted afterwards, so a kept ledger can be measured again (``--reuse``).

The ledger is generated in SQL (``generate_series``), with the schema the migrations make, then
vacuumed and analysed, as autovacuum leaves a table in service.  Prints each figure beside its goal and
writes ``bench/results/ledger_scale-<entries>.json``; ``bench/report.py`` renders the table "Data at
national scale" from them.  Asserts nothing.

    .venv/bin/python -m bench.ledger_scale --entries 1000000      # about 2 minutes
    .venv/bin/python -m bench.ledger_scale --entries 10000000 --snapshot 1000000   # about 5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from functools import partial
from pathlib import Path
from subprocess import PIPE
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from recalls.producers.sync import plan_sync
from recalls.shared.contracts import OutcomeEvent, Recall
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.batches import Batches
from recalls.shared.store.checks import VinChecks
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Key, Ledger, LedgerEntry, State

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/recalls_scale"
GOAL_SYNC_S = 120.0
GOAL_SYNC_RSS_MB = 300.0
GOAL_STATUS_P99_MS = 50.0
GOAL_BATCH_S = 2.0
GOAL_RECONCILE_PER_S = 250.0  # ten times the 25 GET/s a sweep can spend at DVSA
GOAL_RECORD_PER_S = 400.0
BATCH_VINS = 10_000
PAGE = 1000  # VINs per Ledger.for_vins call, as the sweep's comparison reads them
# (i * SPREAD) % entries ranks the entries in an order unrelated to their VINs (a permutation while
# entries is no multiple of these primes): which are open, which changed in the last day.
SPREAD = 2_654_435_761
SPREAD_AGE = 2_246_822_519
THREE_YEARS_S = 3 * 365 * 86_400
SLICE = 1_000_000  # entries per INSERT while generating: progress, and no transaction of hours
Json = dict[str, Any]


class Shape:
    """Which generated entry is what, the same in SQL (generation) and Python (picking samples).

    Entry ``i`` is campaign ``i % 2`` of vehicle ``i // 2``; its rank ``(i * SPREAD) % entries`` says
    its state: below ``existing`` open and in the snapshot, below ``open`` open and missing from it (a
    fix), else fixed (one in ten deleted).  Entries whose second rank falls below ``recent`` changed in
    the last day; the others up to three years ago.
    """

    def __init__(self, entries: int, snapshot: int) -> None:
        if entries % SPREAD == 0 or entries % SPREAD_AGE == 0:
            raise SystemExit("--entries: pick another number (a multiple of the bench's spreading primes)")
        self.entries = entries
        self.snapshot = snapshot
        self.new = snapshot // 50
        self.rejects = snapshot // 10_000
        self.fixes = snapshot // 100
        self.existing = snapshot - self.new - self.rejects
        self.open = self.existing + self.fixes
        self.recent = max(snapshot // 50, 1)
        if self.open > entries:
            raise SystemExit(f"--snapshot {snapshot:,} needs a ledger of at least {self.open:,} entries")

    @property
    def vehicles(self) -> int:
        return (self.entries + 1) // 2

    def rank(self, i: int) -> int:
        return (i * SPREAD) % self.entries

    def key(self, i: int) -> Key:
        return ledger_vin(i // 2), reference(campaign(i))


def ledger_vin(vehicle: int) -> str:
    return f"SCL{vehicle:014d}"


def campaign(i: int) -> int:
    return ((i // 2) * 7 + (i % 2) * 13) % 1000  # differs between a vehicle's two campaigns


def reference(number: int) -> str:
    return f"RC-{number:04d}"


# The SQL twins of the functions above, over a column ``i``.
_CAMPAIGN = "((i / 2) * 7 + (i % 2) * 13) % 1000"
_VIN = "'SCL' || lpad((i / 2)::text, 14, '0')"


# The statements below are built from the bench's own numbers and times, never from input.
def entries_sql(shape: Shape, low: int, high: int, now: dt.datetime) -> str:
    """The generated entries numbered ``low`` to ``high``: the ledger's columns, ``r`` and ``i``."""
    state = f"CASE WHEN r < {shape.open} THEN 'open' WHEN r % 10 = 0 THEN 'deleted' ELSE 'fixed' END"
    age = f"CASE WHEN r2 < {shape.recent} THEN i % 86000 ELSE 86400 + r2 % {THREE_YEARS_S} END"
    changed = f"TIMESTAMPTZ '{now.isoformat()}' - make_interval(secs => {age})"
    return f"""
        SELECT {_VIN} AS vin,
               'RC-' || lpad(({_CAMPAIGN})::text, 4, '0') AS manufacturer_campaign_reference,
               'R/2024/' || lpad(({_CAMPAIGN})::text, 3, '0') AS dvsa_campaign_reference,
               {state} AS state,
               DATE '2020-01-01' + ({_CAMPAIGN})::int AS recall_campaign_start_date,
               CASE WHEN r >= {shape.open} AND r % 10 <> 0 THEN DATE '2023-01-01' + (r % 700)::int END
                   AS rectification_date,
               md5(i::text) AS last_message_id,
               {changed} AS updated_at,
               NULL::timestamptz AS confirmed_at,
               {changed} AS issued_at,
               r, i
        FROM (SELECT i, (i * {SPREAD}) % {shape.entries} AS r, (i * {SPREAD_AGE}) % {shape.entries} AS r2
              FROM generate_series({low}::bigint, {high}::bigint) AS i) AS numbered
    """  # noqa: S608


_COLUMNS = (
    "vin, manufacturer_campaign_reference, dvsa_campaign_reference, state, recall_campaign_start_date, "
    "rectification_date, last_message_id, updated_at, confirmed_at, issued_at"
)


def snapshot_sql(shape: Shape, now: dt.datetime) -> str:
    """The snapshot file's rows, in an order unrelated to VINs, under DVSA's column names."""
    entries = entries_sql(shape, 0, shape.entries - 1, now)
    return f"""
        SELECT vin AS "VIN", ref AS "ManufacturerRecallCampaignReference", dvsa AS "DVSACampaignReference",
               start AS "RecallCampaignStartDate"
        FROM (
            SELECT vin, manufacturer_campaign_reference AS ref,
                   CASE WHEN i % 3 = 0 THEN '' ELSE dvsa_campaign_reference END AS dvsa,
                   recall_campaign_start_date::text AS start, md5('e' || i) AS shuffle
            FROM ({entries}) AS entries WHERE r < {shape.existing}
            UNION ALL
            SELECT 'SCN' || lpad(j::text, 14, '0'), 'RC-' || lpad((j % 1000)::text, 4, '0'), '',
                   '2026-11-01', md5('n' || j)
            FROM generate_series(1, {shape.new}) AS j
            UNION ALL
            SELECT 'SCX' || lpad(j::text, 14, '0'), 'RC-0001', '', '31/13/2026', md5('x' || j)
            FROM generate_series(1, {shape.rejects}) AS j
        ) AS rows ORDER BY shuffle
    """  # noqa: S608


def checks_sql(low: int, high: int, now: dt.datetime) -> str:
    """A check for every other vehicle of ``low`` to ``high``, answered within the 48 hours before ``now``."""
    recall = (
        """'{"manufacturer_campaign_reference":"RC-' || lpad((CAMPAIGN)::text, 4, '0') || """
        """'","dvsa_campaign_reference":"R/2024/' || lpad((CAMPAIGN)::text, 3, '0') || """
        """'","recall_campaign_start_date":"2021-01-01","repair_status":"NOT_FIXED"}'"""
    )
    first, second = (recall.replace("CAMPAIGN", f"(v * 7 + {k * 13}) % 1000") for k in (0, 1))
    return f"""
        INSERT INTO vin_checks (vin, checked_at, recalls)
        SELECT 'SCL' || lpad(v::text, 14, '0'),
               TIMESTAMPTZ '{now.isoformat()}' - make_interval(secs => (v * 37) % 172800),
               '[' || {first} || ',' || {second} || ']'
        FROM generate_series({low}::bigint, {high}::bigint) AS v WHERE v % 2 = 0
    """  # noqa: S608


# --- the scratch database -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def session(url: str, database: str | None = None) -> AsyncIterator[AsyncConnection]:
    """A connection to ``database`` (default: the URL's) in autocommit: CREATE DATABASE and VACUUM need it."""
    target = make_url(url).set(drivername="postgresql+asyncpg")
    engine = create_async_engine(
        target.set(database=database or target.database), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def create_database(url: str, *, reuse: bool) -> bool:
    """Make the run's database; True if it was made, False if ``reuse`` found one there already."""
    name = make_url(url).database
    async with session(url, "postgres") as admin:
        query = text("SELECT 1 FROM pg_database WHERE datname = :name")
        exists = (await admin.execute(query, {"name": name})).scalar() is not None
        if exists and not reuse:
            raise SystemExit(f"database {name!r} exists: drop it, pick another, or --reuse a kept one")
        if not exists:
            await admin.execute(text(f'CREATE DATABASE "{name}"'))
        return not exists


async def drop_database(url: str) -> None:
    async with session(url, "postgres") as admin:
        await admin.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


async def generate(url: str, shape: Shape, now: dt.datetime) -> Json:
    """Fill the ledger and the cache of checks, then vacuum and analyse them; how long it took."""
    started = time.perf_counter()
    async with session(url) as connection:
        await connection.execute(text("SET synchronous_commit = off"))  # a scratch ledger: speed, not safety
        for low in range(0, shape.entries, SLICE):
            high = min(low + SLICE, shape.entries) - 1
            entries = entries_sql(shape, low, high, now)
            await connection.execute(
                text(f"INSERT INTO ledger ({_COLUMNS}) SELECT {_COLUMNS} FROM ({entries}) e")  # noqa: S608
            )
            print(f"  ledger: {high + 1:,} of {shape.entries:,} entries", file=sys.stderr, flush=True)
        for low in range(0, shape.vehicles, SLICE):
            await connection.execute(text(checks_sql(low, min(low + SLICE, shape.vehicles) - 1, now)))
        for table in ("ledger", "vin_checks"):
            await connection.execute(text(f"VACUUM (ANALYZE) {table}"))
        await connection.execute(
            text("CREATE TABLE bench_scale (entries BIGINT, snapshot BIGINT, at TIMESTAMPTZ)")
        )
        values = {"entries": shape.entries, "snapshot": shape.snapshot, "at": now}
        await connection.execute(text("INSERT INTO bench_scale VALUES (:entries, :snapshot, :at)"), values)
    return {"seconds": round(time.perf_counter() - started, 1)}


async def generated_at(url: str, shape: Shape) -> dt.datetime:
    """When the kept ledger at ``url`` was generated, if it has this shape (``--reuse``)."""
    async with session(url) as connection:
        try:
            row = (await connection.execute(text("SELECT entries, snapshot, at FROM bench_scale"))).first()
        except ProgrammingError:  # no such table: not a ledger of this bench's
            row = None
    if row is None or (row.entries, row.snapshot) != (shape.entries, shape.snapshot):
        raise SystemExit("--reuse: the database holds no ledger this bench generated with these sizes")
    when: dt.datetime = row.at
    return when


async def sizes(url: str) -> Json:
    """Each table's size on disk with its indexes, in MB."""
    query = text("SELECT pg_total_relation_size(CAST(:table AS regclass)) / 1048576.0")
    async with session(url) as connection:
        return {
            table: round(float((await connection.execute(query, {"table": table})).scalar_one()))
            for table in ("ledger", "vin_checks")
        }


async def write_snapshot(url: str, shape: Shape, path: Path, now: dt.datetime) -> None:
    async with session(url) as connection:
        await connection.execute(text("SET work_mem = '256MB'"))  # the shuffle's sort, in memory
        driver: Any = (await connection.get_raw_connection()).driver_connection  # asyncpg's, for COPY
        await driver.copy_from_query(snapshot_sql(shape, now), output=str(path), format="csv", header=True)


# --- measuring ------------------------------------------------------------------------------------


class Memory:
    """Samples this process's resident memory every 0.25 s while in use; its peak from the kernel."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 1048576
        while True:
            with open("/proc/self/statm") as statm:
                self.samples.append(int(statm.read().split()[1]) * page_mb)
            if self._stop.wait(0.25):
                return

    def report(self) -> Json:
        spread = self.samples or [0.0]
        at = {f"{p}%": round(spread[min(len(spread) - 1, len(spread) * p // 100)], 1) for p in (10, 50, 90)}
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        return {"rss_mb_peak": round(peak_mb, 1), "rss_mb_at": at}


class TimedLedger(Ledger):
    """A ledger that adds up the time the sync plan spends in each of its reads."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.spent = {"states": 0.0, "open_recalls": 0.0}

    async def states(self, keys: Collection[Key]) -> dict[Key, State]:
        started = time.perf_counter()
        try:
            return await super().states(keys)
        finally:
            self.spent["states"] += time.perf_counter() - started

    async def open_recalls(self) -> AsyncIterator[LedgerEntry]:
        entries = super().open_recalls()
        while True:
            started = time.perf_counter()
            try:
                entry = await anext(entries)
            except StopAsyncIteration:
                return
            finally:
                self.spent["open_recalls"] += time.perf_counter() - started
            yield entry


def percentiles(values_ms: list[float]) -> Json:
    cuts = statistics.quantiles(values_ms, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "max_ms": round(max(values_ms), 2)}


async def child_sync(settings: Settings, snapshot: Path, shape: Shape) -> Json:
    with Memory() as memory:
        async with Database.connect_existing(settings) as db:
            ledger = TimedLedger(db)
            started = time.perf_counter()
            plan = await plan_sync(ledger, snapshot, dt.date.today())
            seconds = time.perf_counter() - started
    expected = (shape.existing, shape.new, shape.fixes, shape.rejects)
    found = (plan.unchanged, plan.creates, len(plan.fixes), plan.rejected)
    return {
        "seconds": round(seconds, 2),
        "rows": plan.rows_read,
        "unchanged": plan.unchanged,
        "creates": plan.creates,
        "fixes": len(plan.fixes),
        "rejected": plan.rejected,
        "open_before": plan.open_before,
        "as_generated": found == expected,  # the plan found what the file was made to hold
        "reads_s": {name: round(spent, 2) for name, spent in ledger.spent.items()},
        **memory.report(),
    }


async def child_reconcile(settings: Settings, shape: Shape, now: dt.datetime) -> Json:
    found: Json = {}
    with Memory() as memory:
        async with Database.connect_existing(settings) as db:
            ledger = Ledger(db)
            for name, since in (("all", None), ("since_a_day", now - dt.timedelta(days=1))):
                started = time.perf_counter()
                count = sum([len(page) async for page in ledger.vin_pages(since=since)])
                seconds = time.perf_counter() - started
                found[name] = {"vins": count, "seconds": round(seconds, 2), "per_s": round(count / seconds)}
            pages = [[ledger_vin(random.randrange(shape.vehicles)) for _ in range(PAGE)] for _ in range(10)]
            started = time.perf_counter()
            for page in pages:
                await ledger.for_vins(page)
            seconds = time.perf_counter() - started
            found["for_vins"] = {
                "vins": 10 * PAGE,
                "seconds": round(seconds, 2),
                "per_s": round(10 * PAGE / seconds),
            }
    return found | memory.report()


def run_child(kind: str, options: argparse.Namespace, extra: list[str]) -> Json:
    """Run one phase in a child process of its own (its memory is the phase's); its figures."""
    command = [sys.executable, "-m", "bench.ledger_scale", "--child", kind, "--entries", str(options.entries)]
    command += ["--snapshot", str(options.snapshot), "--database-url", options.database_url, *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"the {kind} phase failed:\n{done.stderr}")
    figures: Json = json.loads(done.stdout.splitlines()[-1])
    return figures


async def status(db: Database, settings: Settings, shape: Shape, samples: int, processes: int) -> Json:
    ledger = Ledger(db)
    timings: list[float] = []
    for _ in range(samples):
        vin = ledger_vin(random.randrange(shape.vehicles))
        started = time.perf_counter()
        await ledger.for_vin(vin)
        timings.append((time.perf_counter() - started) * 1000)
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    env = {**os.environ, "RECALLS_DATABASE_URL": url}
    runs: list[float] = []
    for _ in range(processes):
        command = [
            sys.executable,
            "-m",
            "recalls",
            "status",
            ledger_vin(random.randrange(shape.vehicles)),
            "--json",
        ]
        started = time.perf_counter()
        child = await asyncio.create_subprocess_exec(*command, env=env, stdout=PIPE, stderr=PIPE)
        _out, err = await child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"recalls status failed: {err.decode()}")
        runs.append((time.perf_counter() - started) * 1000)
    whole = {"runs": processes, "p50_ms": round(statistics.median(runs), 1), "max_ms": round(max(runs), 1)}
    return {"in_process": {"samples": samples, **percentiles(timings)}, "whole_process": whole}


async def batch_lookups(db: Database, shape: Shape, now: dt.datetime, repeats: int = 3) -> Json:
    """A 10,000-VIN submit's look-up in the cache: 70% vehicles of the ledger, 30% new, distinct."""
    checks = VinChecks(db)
    since = now - dt.timedelta(days=1)
    timings: list[float] = []
    answered: list[int] = []
    for run in range(repeats):
        known = {ledger_vin(v) for v in random.sample(range(shape.vehicles), min(7000, shape.vehicles))}
        vins = [*known, *(f"SCB{run}{n:013d}" for n in range(BATCH_VINS - len(known)))]
        started = time.perf_counter()
        cached = await checks.fresh(vins, since)
        timings.append(time.perf_counter() - started)
        answered.append(len(cached))
    return {
        "vins": BATCH_VINS,
        "seconds": [round(t, 3) for t in timings],
        "slowest_s": round(max(timings), 3),
        "from_cache": answered,
    }


def events_for(shape: Shape, count: int, tag: str, now: dt.datetime) -> list[OutcomeEvent]:
    """A quarter each: creates of new entries; fixes, deletes and whole-vehicle gets of fixed ones.

    The entries touched are not open, so a kept ledger's sync plan is the same on the next run (the
    creates are deleted afterwards: :func:`forget_created`).
    """
    closed = [
        i
        for i in random.sample(range(shape.entries), min(shape.entries, 40 * count))
        if shape.rank(i) >= shape.open
    ]
    if not closed:
        raise SystemExit("--entries: the ledger needs closed entries beside the snapshot's open ones")
    events: list[OutcomeEvent] = []
    for n in range(count):
        at = now + dt.timedelta(microseconds=n)
        common: Json = {"message_id": f"{tag}-{n}", "result": "applied", "attempts": 1, "dvsa_status": 200}
        common |= {"issued_at": at, "first_seen_at": at, "completed_at": at}
        i = closed[n % len(closed)]
        vin, ref = shape.key(i)
        if n % 4 == 0:
            new_vin = f"E{tag.upper()}{n:010d}"
            start = dt.date(2026, 11, 1)
            events.append(
                OutcomeEvent(
                    verb="create",
                    vin=new_vin,
                    manufacturer_campaign_reference=ref,
                    recall_campaign_start_date=start,
                    **common,
                )
            )
        elif n % 4 == 1:
            fixed: Json = {"rectification_date": dt.date(2026, 12, 1), "repair_status": "FIXED"}
            events.append(
                OutcomeEvent(verb="fix", vin=vin, manufacturer_campaign_reference=ref, **fixed, **common)
            )
        elif n % 4 == 2:
            events.append(OutcomeEvent(verb="delete", vin=vin, manufacturer_campaign_reference=ref, **common))
        else:
            held = [
                shape.key(j)[1]
                for j in (i - i % 2, i - i % 2 + 1)
                if j < shape.entries and shape.rank(j) >= shape.open
            ]
            recalls = [Recall(manufacturer_campaign_reference=r, repair_status="FIXED") for r in held]
            events.append(OutcomeEvent(verb="get", vin=vin, recalls=recalls, **common))
    return events


async def recording(db: Database, shape: Shape, count: int, group: int) -> Json:
    """Write ``count`` events in groups of ``group``, one transaction each, as the recorder does."""
    ledger, batches, checks = Ledger(db), Batches(db), VinChecks(db)
    tag = uuid.uuid4().hex[:6]

    def record(events: list[OutcomeEvent], connection: Connection) -> bool:
        # workers/ledger.py's EventRecorder._record: ledger, batch journal and cache in one transaction.
        ledger.apply_within(connection, events)
        ended = batches.record_within(connection, events)
        checks.remember_within(connection, events)
        return ended

    events = events_for(shape, count, tag, dt.datetime.now(dt.UTC))
    started = time.perf_counter()
    for start in range(0, count, group):
        await db.run(partial(record, events[start : start + group]), write=True)
    seconds = time.perf_counter() - started
    await forget_created(db, tag)
    return {"events": count, "group": group, "seconds": round(seconds, 2), "per_s": round(count / seconds)}


async def forget_created(db: Database, tag: str) -> None:
    first = f"E{tag.upper()}"
    await db.run(
        lambda c: c.execute(
            text("DELETE FROM ledger WHERE vin >= :a AND vin < :b"), {"a": first, "b": first + "~"}
        ),
        write=True,
    )


# --- the run --------------------------------------------------------------------------------------


def goals(report: Json) -> Json:
    sync, batch, reconcile = report["sync"], report["batch"], report["reconcile"]
    return {
        "sync_s": sync["seconds"] <= GOAL_SYNC_S,
        "sync_rss_mb": sync["rss_mb_peak"] < GOAL_SYNC_RSS_MB,
        "status_p99_ms": report["status"]["in_process"]["p99_ms"] < GOAL_STATUS_P99_MS,
        "batch_s": batch["slowest_s"] < GOAL_BATCH_S,
        "reconcile_per_s": min(reconcile[name]["per_s"] for name in ("all", "since_a_day", "for_vins"))
        >= GOAL_RECONCILE_PER_S,
        "record_per_s": report["recording"]["per_s"] >= GOAL_RECORD_PER_S,
    }


async def run(options: argparse.Namespace) -> Json:
    # Here, not at the top: the child phases' memory is measured, and this module loads the AMQP client.
    from bench.fleet_throughput import code_version  # noqa: PLC0415

    shape = Shape(options.entries, options.snapshot)
    url = options.database_url
    settings = load_settings(database_url=url)
    made = await create_database(url, reuse=options.reuse)
    report: Json = {"options": {"entries": shape.entries, "snapshot": shape.snapshot}, "code": code_version()}
    try:
        async with Database.opened(settings) as db:
            started = time.perf_counter()
            applied = await db.migrate()
            report["migrate"] = {"applied": applied, "seconds": round(time.perf_counter() - started, 1)}
        if made:
            now = dt.datetime.now(dt.UTC)
            report["generate"] = await generate(url, shape, now)
        else:
            now = await generated_at(url, shape)
        report["ledger"] = {
            "entries": shape.entries,
            "open": shape.open,
            "vehicles": shape.vehicles,
            "vin_checks": (shape.vehicles + 1) // 2,
            "mb": await sizes(url),
        }
        with tempfile.TemporaryDirectory() as scratch:
            snapshot = Path(scratch) / f"recalls-{dt.date.today()}.csv"
            await write_snapshot(url, shape, snapshot, now)
            print("  measuring: sync", file=sys.stderr, flush=True)
            report["sync"] = run_child("sync", options, ["--file", str(snapshot)])
        print("  measuring: reconcile", file=sys.stderr, flush=True)
        report["reconcile"] = run_child("reconcile", options, ["--now", now.isoformat()])
        async with Database.connect(settings) as db:
            print("  measuring: status, batch, recording", file=sys.stderr, flush=True)
            report["status"] = await status(
                db, settings, shape, options.status_samples, options.status_processes
            )
            report["batch"] = await batch_lookups(db, shape, now)
            report["recording"] = await recording(db, shape, options.events, options.group)
    finally:
        if not options.keep:
            await drop_database(url)
    report["goals_met"] = goals(report)
    return report


def show(report: Json) -> None:
    options, sync, status_, batch = report["options"], report["sync"], report["status"], report["batch"]
    reconcile, recording_ = report["reconcile"], report["recording"]
    print(f"\nledger of {options['entries']:,} entries ({report['ledger']['mb']} MB), PostgreSQL")
    migrated = report["migrate"]
    print(f"  migrations applied: {migrated['applied'] or 'none'} ({migrated['seconds']:.1f} s)")

    def line(figure: str, value: str, goal: str, met: bool | None) -> None:
        verdict = "" if met is None else ("  met" if met else "  MISSED")
        print(f"  {figure:<58} {value:>16}   goal {goal}{verdict}")

    met = report["goals_met"]
    rows = f"{sync['rows']:,}-row snapshot"
    line(f"sync plan of a {rows}", f"{sync['seconds']:.1f} s", f"<= {GOAL_SYNC_S:g} s", met["sync_s"])
    memory = " / ".join(f"{value:.0f}" for value in sync["rss_mb_at"].values())
    line(
        "  its peak RSS (10/50/90% of the run: " + memory + " MB)",
        f"{sync['rss_mb_peak']:.0f} MB",
        f"< {GOAL_SYNC_RSS_MB:g} MB, flat",
        met["sync_rss_mb"],
    )
    print(
        f"    plan: {sync['unchanged']:,} unchanged, {sync['creates']:,} creates, {sync['fixes']:,} fixes, "
        f"{sync['rejected']:,} rejected (as generated: {sync['as_generated']}); reads {sync['reads_s']}"
    )
    inside = status_["in_process"]
    line(
        f"status: Ledger.for_vin p99 ({inside['samples']} VINs, in-process)",
        f"{inside['p99_ms']:.2f} ms",
        f"< {GOAL_STATUS_P99_MS:g} ms",
        met["status_p99_ms"],
    )
    whole = status_["whole_process"]
    line(
        f"status: `recalls status VIN --json`, p50 of {whole['runs']} processes",
        f"{whole['p50_ms']:.0f} ms",
        "none (start-up)",
        None,
    )
    line(
        f"batch: VinChecks.fresh of {batch['vins']:,} VINs, slowest of 3",
        f"{batch['slowest_s']:.3f} s",
        f"< {GOAL_BATCH_S:g} s",
        met["batch_s"],
    )
    for name, label in (
        ("all", "Ledger.vin_pages()"),
        ("since_a_day", "Ledger.vin_pages(since=a day ago)"),
        ("for_vins", "Ledger.for_vins, pages of 1,000"),
    ):
        figures = reconcile[name]
        line(
            f"reconcile: {label} ({figures['vins']:,} VINs)",
            f"{figures['per_s']:,} VINs/s",
            f">= {GOAL_RECONCILE_PER_S:g}/s",
            figures["per_s"] >= GOAL_RECONCILE_PER_S,
        )
    print(f"    reconcile phase's peak RSS {reconcile['rss_mb_peak']:.0f} MB")
    line(
        f"recording: {recording_['events']:,} events in groups of {recording_['group']}",
        f"{recording_['per_s']:,} events/s",
        f">= {GOAL_RECORD_PER_S:g}/s",
        met["record_per_s"],
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="ledger entries to generate")
    parser.add_argument("--snapshot", type=int, default=1_000_000, help="rows of the sync's snapshot file")
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a database this run creates and drops")
    parser.add_argument("--keep", action="store_true", help="leave the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure a ledger kept by an earlier --keep run")
    parser.add_argument("--status-samples", type=int, default=300)
    parser.add_argument("--status-processes", type=int, default=5)
    parser.add_argument("--events", type=int, default=8000, help="outcome events to record")
    parser.add_argument("--group", type=int, default=40, help="events per transaction (0.1 s at 400/s)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    parser.add_argument("--child", choices=["sync", "reconcile"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--now", type=dt.datetime.fromisoformat, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    if options.child is not None:
        settings = load_settings(database_url=options.database_url)
        shape = Shape(options.entries, options.snapshot)
        phase: Callable[[], Any] = (
            partial(child_sync, settings, options.file, shape)
            if options.child == "sync"
            else partial(child_reconcile, settings, shape, options.now)
        )
        print(json.dumps(asyncio.run(phase())))
        return
    report = asyncio.run(run(options))
    show(report)
    if not options.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"ledger_scale-{options.entries}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
