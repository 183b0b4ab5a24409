"""A reconcile sweep of N vehicles alone, then beside a batch check of N VINs, which it must not slow.

``recalls reconcile`` publishes one ``get`` per vehicle of the ledger on the background lane, whose calls
take only the DVSA budget that live and bulk work leave; the batch API's checks are ``get``s on the bulk
lane.  Three phases, each against a fresh fleet of its own (prefix ``bench-<hex>``, sandbox, SQLite store
in a temporary directory, one worker in local mode; the sandbox strict at 25 GET/s), so no phase's
queues, cache of checks or sandbox counters reach into the next:

1. **sweep alone**: a ledger of N vehicles that the sandbox agrees with (each with one open campaign,
   seeded through ``POST /__admin/recalls`` and written with ``Ledger.apply`` as creates applied long
   ago); ``recalls reconcile --json --report <tmp>`` runs as a child with the worker's environment and
   is timed from its start to its exit (0: no drift);
2. **batch check alone**: N new VINs (a recall on every third) submitted through ``recalls api`` and
   polled to ``completed``, as ``bench/batch_check.py`` does: T_alone;
3. **both at once**: the same sweep as in 1; once its first GETs reach the sandbox, a batch check of N
   new VINs as in 2: its time T_both, and the sweep's time to its exit.

Figures: each time against the physical limit at 25 GET/s (N / 25 s for the sweep alone and each batch,
2N / 25 s for the sweep that shares DVSA with the batch), 429s and the most GETs in any one second at
the sandbox, the sweep's exit code, drifts and unchecked vehicles, and in phase 3 how many of the
sweep's GETs reached DVSA between the batch's first GET and its last.  Goals: the sweep alone within
1.03 times N / 25 s; T_both / T_alone at most 1.03 (the sweep takes only what the batch leaves); no
429s, at most 25 GETs in any second.  Prints a table and writes ``bench/results/reconcile_sweep-<N>.json``
(options, the commit measured, each phase's figures).  Asserts nothing.

With ``--live``, one phase instead of the three, on a fleet of its own as above: **live work beside a
sweep**.  The sweep of N vehicles (1,500 unless ``--vins`` says otherwise: a 60 s sweep) as in 1; once
its first GETs reach the sandbox, one live ``create`` (a new VIN each) and one live ``get`` (a VIN
seeded at the sandbox, not in the sweep) every second for 40 seconds.  Figures: per verb, publish →
arrival at DVSA (the sandbox journal's ``arrival``, epoch seconds, less ``time.time()`` just before
publishing, as ``bench/fleet_throughput.py`` measures it) p50, p99 and max, goal max < 2 s; the sweep's
time to its exit against (N + 40) / 25 s, since each live get takes one of its slots; 429s and the most
GETs in any one second.  Writes ``bench/results/reconcile_sweep_live-<N>.json``.

    .venv/bin/python -m bench.reconcile_sweep [--vins 10000]    # about 25 minutes at 10,000
    .venv/bin/python -m bench.reconcile_sweep --live [--vins 1500]    # about 80 s at 1,500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aio_pika.abc import AbstractChannel

from bench.batch_check import ONE_WORKER, api_process, recalls, submit, vins
from bench.fleet_throughput import (
    REFERENCE,
    RESULTS,
    ROOT,
    START,
    WORKER_ENTRY,
    code_version,
    percentiles,
    running_workers,
    sandbox_and_broker,
    sandbox_view,
    seed,
    subscribe,
    vin,
    worker_env,
)
from bench.ports import free_port
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.contracts import CreateCommand, GetCommand, OutcomeEvent
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.shared.topology import Topology

GOAL_RATIO = 1.03  # the sweep alone against N / 25 s, and a batch check beside it against the batch alone
LEDGER_CHUNK = 1000  # events per Ledger.apply: one transaction each
APPLIED_AT = dt.datetime.combine(START, dt.time(9), tzinfo=dt.UTC)  # long before the sweep
SWEEP_VINS = 10_000  # the three phases' default
LIVE_VINS = 1_500  # the live phase's default: a 60 s sweep at 25 GET/s
LIVE_SECONDS = 40  # one live create and one live get each second, for this long
GOAL_LIVE_MS = 2000.0  # publish → DVSA for every live command: "within 2 s"
Json = dict[str, Any]


@dataclass(frozen=True)
class Fleet:
    """One phase's fleet: its settings, an admin client of its sandbox, the environment of its children."""

    settings: Settings
    admin: httpx.AsyncClient
    env: dict[str, str]
    scratch: Path
    channel: AbstractChannel  # with the prefix's topology declared

    async def get_stats(self) -> Json:
        stats: Json = (await self.admin.get("/__admin/stats")).raise_for_status().json()["get"]
        return stats


@contextlib.asynccontextmanager
async def fleet() -> AsyncIterator[Fleet]:
    """A fresh prefix, sandbox, SQLite store and one running worker; all gone afterwards."""
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["RECALLS_SQLITE_PATH"] = str(Path(scratch) / "store.db")  # the children inherit it
        settings = load_settings(prefix=f"bench-{tag}")
        async with (
            sandbox_and_broker(settings) as (settings, admin, channel),
            running_workers(settings, ONE_WORKER),
        ):
            yield Fleet(settings, admin, worker_env(settings, None), Path(scratch), channel)


# --- the sweep ------------------------------------------------------------------------------------


def applied_create(car: str) -> OutcomeEvent:
    """The ledger's record of a create DVSA applied long ago: the campaign the sandbox is seeded with."""
    return OutcomeEvent(
        message_id=f"create-{car}",
        verb="create",
        vin=car,
        manufacturer_campaign_reference=REFERENCE,
        result="applied",
        dvsa_status=201,
        attempts=1,
        issued_at=APPLIED_AT,
        first_seen_at=APPLIED_AT,
        completed_at=APPLIED_AT,
        recall_campaign_start_date=START,
    )


async def agreeing_ledger(fleet: Fleet, count: int) -> list[str]:
    """``count`` vehicles, each with one open campaign, alike in the ledger and at the sandbox."""
    cars = [vin(fleet.settings.prefix[-6:], "S", n) for n in range(count)]
    await seed(fleet.admin, cars)
    async with Database.connect(fleet.settings) as db:
        ledger = Ledger(db)
        for start in range(0, count, LEDGER_CHUNK):
            await ledger.apply(*map(applied_create, cars[start : start + LEDGER_CHUNK]))
    return cars


@dataclass
class Sweep:
    exit_code: int
    seconds: float
    summary: Json  # ``recalls reconcile --json``'s, empty if it printed none


async def sweep(fleet: Fleet) -> Sweep:
    """``recalls reconcile --json`` as a cron job runs it, timed from its start to its exit."""
    report = fleet.scratch / f"drift-{uuid.uuid4().hex[:8]}.csv"
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER_ENTRY, "reconcile", "--json", "--report", str(report),
        env=fleet.env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await child.communicate()
    seconds = time.perf_counter() - started
    code = child.returncode if child.returncode is not None else -1
    if code not in (0, 3):
        print(f"recalls reconcile exited {code}:\n  " + "\n  ".join(err.decode().splitlines()[-10:]))
    text = out.decode().strip()
    return Sweep(code, seconds, json.loads(text.splitlines()[-1]) if text else {})


def sweep_figures(done: Sweep, physical_limit_s: float) -> Json:
    summary = done.summary
    return {
        "wall_s": round(done.seconds, 1),
        "exit_code": done.exit_code,
        "swept": summary.get("swept"),
        "unchecked": summary.get("unchecked"),
        "drifts": sum(summary["drift"].values()) if "drift" in summary else None,
        "physical_limit_s": physical_limit_s,
    }


async def began(fleet: Fleet) -> None:
    """Until the sweep's first GETs reach the sandbox (the phase's fresh sandbox has seen no others)."""
    async with asyncio.timeout(120):
        while True:
            if (await fleet.get_stats())["count"] > 0:
                return
            await asyncio.sleep(0.05)  # the sandbox tells nobody; polling is all there is


# --- the batch check ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def batch_api(fleet: Fleet) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """``recalls api`` on a free port, a client of it and a key of its own."""
    key = (await recalls("api", "keys", "create", "bench", env=fleet.env)).splitlines()[-1]
    port = free_port()
    server = await api_process(fleet.env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as api:
            yield api, key
    finally:
        server.terminate()
        await server.wait()


async def new_vins(fleet: Fleet, count: int) -> list[str]:
    """``count`` VINs no check has seen, with a recall seeded at the sandbox on every third."""
    batch = vins(uuid.uuid4().hex, count)
    await seed(fleet.admin, batch[::3])
    return batch


async def batch_check(fleet: Fleet, api: httpx.AsyncClient, key: str, batch: list[str]) -> Json:
    """``batch`` submitted and polled to its end, timed from the submit."""
    status, seconds = await submit(api, key, batch)
    return {
        "wall_s": round(seconds, 1),
        "status": status["status"],
        "processed": status["processedVins"],
        "hits": status["hitCount"],
        "physical_limit_s": len(batch) / fleet.settings.rate_limit,
    }


def sandbox_figures(stats: Json) -> Json:
    return {
        "gets": stats["count"],
        "throttled_429": stats["throttled"],
        "max_in_window": stats["max_in_window"],
    }


# --- the phases -----------------------------------------------------------------------------------


async def sweep_alone(count: int) -> Json:
    async with fleet() as running:
        await agreeing_ledger(running, count)
        done = await sweep(running)
        return sweep_figures(done, count / running.settings.rate_limit) | sandbox_figures(
            await running.get_stats()
        )


async def batch_alone(count: int) -> Json:
    async with fleet() as running, batch_api(running) as (api, key):
        batch = await new_vins(running, count)
        return await batch_check(running, api, key, batch) | sandbox_figures(await running.get_stats())


async def both(count: int, alone_s: float) -> Json:
    async with fleet() as running, batch_api(running) as (api, key):
        cars = await agreeing_ledger(running, count)
        batch = await new_vins(running, count)
        sweeping = asyncio.create_task(sweep(running))
        await began(running)
        checked = await batch_check(running, api, key, batch)
        done = await sweeping
        journal = (await running.admin.get("/__admin/requests")).raise_for_status().json()
        beside = amid(journal, among=cars, of=batch)
        # The sweep shares DVSA with the batch: both together cannot end before 2N / 25 s.
        limit_s = (len(cars) + len(batch)) / running.settings.rate_limit
        return {
            "batch": checked | {"ratio_to_alone": round(checked["wall_s"] / alone_s, 4)},
            "sweep": sweep_figures(done, limit_s) | {"gets_amid_batch": beside},
        } | sandbox_figures(await running.get_stats())


def amid(journal: list[Json], *, among: list[str], of: list[str]) -> int:
    """How many GETs of ``among``'s VINs reached the sandbox between the first and last GET of ``of``'s."""
    paths = {f"/recalls/vin/{car}" for car in of}
    arrivals = [entry["arrival"] for entry in journal if entry["path"] in paths]
    if not arrivals:
        return 0
    first, last = min(arrivals), max(arrivals)
    theirs = {f"/recalls/vin/{car}" for car in among}
    return sum(entry["path"] in theirs and first <= entry["arrival"] <= last for entry in journal)


# --- live work beside a sweep ---------------------------------------------------------------------


LivePair = tuple[CreateCommand, GetCommand]


def live_pairs(tag: str, seconds: int) -> list[LivePair]:
    """Each second's commands: a create of a new VIN, and a get of a VIN the sweep does not check."""
    return [
        (
            CreateCommand(
                vin=vin(tag, "C", n),
                manufacturer_campaign_reference=REFERENCE,
                recall_campaign_start_date=START,
            ),
            GetCommand(vin=vin(tag, "L", n)),
        )
        for n in range(seconds)
    ]


async def publish_live(publisher: Publisher, pairs: Sequence[LivePair]) -> dict[str, float]:
    """One pair a second on the live lane; ``time.time()`` just before each publish, by message_id."""
    sent: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    begin = loop.time()
    for second, pair in enumerate(pairs):
        await asyncio.sleep(max(0.0, begin + second - loop.time()))
        for command in pair:
            sent[command.message_id] = time.time()
            await publisher.publish(command)
    return sent


def get_latencies(gets: Sequence[GetCommand], sent: dict[str, float], journal: list[Json]) -> Json:
    """Each get's first arrival at the sandbox (its path names its VIN) less its publish."""
    first: dict[str, float] = {}
    for entry in journal:  # oldest first: setdefault keeps each path's first arrival
        if entry["verb"] == "get":
            first.setdefault(entry["path"], entry["arrival"])
    paths = {get.message_id: f"/recalls/vin/{get.vin}" for get in gets}
    latencies = [(first[path] - sent[key]) * 1000 for key, path in paths.items() if path in first]
    return {"published": len(gets), "arrived": len(latencies)} | percentiles(latencies)


def create_latencies(creates: Sequence[CreateCommand], sent: dict[str, float], journal: list[Json]) -> Json:
    """The nth create published paired with the nth to reach the sandbox, less its publish.

    A create's VIN travels in its body, which the journal does not keep, but the live creates are the
    phase's only ones: the pairing is certain when as many arrived as were published, each after its own
    publish and before the next one's (``pairing_certain``).
    """
    published = sorted(sent[create.message_id] for create in creates)
    arrivals = sorted(entry["arrival"] for entry in journal if entry["verb"] == "create")
    following = [*published[1:], float("inf")]
    certain = len(arrivals) == len(published) and all(
        start <= arrival < end for start, arrival, end in zip(published, arrivals, following, strict=True)
    )
    latencies = [(arrival - start) * 1000 for start, arrival in zip(published, arrivals, strict=False)]
    counts = {"published": len(creates), "arrived": len(arrivals), "pairing_certain": certain}
    return counts | percentiles(latencies)


async def live_beside_sweep(count: int, seconds: int) -> Json:
    async with fleet() as running, Publisher.connect(publisher_config(running.settings)) as publisher:
        settings = running.settings
        cars = await agreeing_ledger(running, count)
        pairs = live_pairs(settings.prefix[-6:], seconds)
        await seed(running.admin, [get.vin for _, get in pairs])
        outcomes = await subscribe(running.channel, Topology(settings.prefix, settings.retry_tiers))
        sweeping = asyncio.create_task(sweep(running))
        await began(running)
        sent = await publish_live(publisher, pairs)
        live_done = await outcomes.wait_for(set(sent), within=60)
        done = await sweeping
        stats, journal = await sandbox_view(running.admin)
        swept = {f"/recalls/vin/{car}" for car in cars}
        last_sent = max(sent.values())
        return {
            "live": {
                "seconds": seconds,
                "all_outcomes": live_done,
                "create": create_latencies([create for create, _ in pairs], sent, journal),
                "get": get_latencies([get for _, get in pairs], sent, journal),
                "creates_throttled_429": stats["create"]["throttled"],
                "goal_max_ms": GOAL_LIVE_MS,
            },
            # Each live get takes one of the sweep's slots: together they cannot end before (N + live) / 25 s.
            "sweep": sweep_figures(done, (count + seconds) / settings.rate_limit)
            | {"gets_after_live": sum(e["path"] in swept and e["arrival"] > last_sent for e in journal)},
        } | sandbox_figures(stats["get"])


async def run_live(count: int) -> Json:
    report: Json = {
        "options": {"vins": count, "processes": 1, "redis": None, "live_seconds": LIVE_SECONDS},
        "code": code_version(),
        "limit_per_verb": load_settings().rate_limit,
    }
    report["live_beside_sweep"] = await live_beside_sweep(count, LIVE_SECONDS)
    report["live_beside_sweep"]["sweep"] = with_ratio(report["live_beside_sweep"]["sweep"])
    report["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return report


async def run(count: int) -> Json:
    report: Json = {
        "options": {"vins": count, "processes": 1, "redis": None},
        "code": code_version(),
        "limit_per_verb": load_settings().rate_limit,  # each phase's sandbox and worker keep this one
    }
    report["sweep_alone"] = with_ratio(await sweep_alone(count))
    report["batch_alone"] = with_ratio(await batch_alone(count))
    report["both"] = await both(count, report["batch_alone"]["wall_s"])
    for part in ("batch", "sweep"):
        report["both"][part] = with_ratio(report["both"][part])
    report["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return report


def with_ratio(figures: Json) -> Json:
    return figures | {"ratio_to_limit": round(figures["wall_s"] / figures["physical_limit_s"], 4)}


# --- the report -----------------------------------------------------------------------------------


def show(report: Json) -> None:
    count, code, both_ = report["options"]["vins"], report["code"], report["both"]
    edits = f", uncommitted edits to {len(code['modified'])} files" if code["modified"] else ""
    print(f"\nreconcile_sweep: {count:,} vehicles and VINs, one worker (local mode), strict 25 GET/s sandbox")
    print(f"  code: {code['commit']}{edits}\n")
    header = "phase                        wall s  limit s  ratio  goal      429s  max GET/1s  outcome"
    print(header + "\n" + "-" * len(header))
    alone, batch = report["sweep_alone"], report["batch_alone"]
    together = both_["batch"]
    beside = f"{together['status']}; {together['ratio_to_alone']:.3f} times alone (goal <= {GOAL_RATIO})"
    rows: Sequence[tuple[str, Json, Json, str, str]] = [
        ("sweep alone", alone, alone, f"<= {GOAL_RATIO}", sweep_outcome(alone)),
        ("batch check alone", batch, batch, f"<= {GOAL_RATIO}", batch["status"]),
        ("both: batch check", together, both_, "", beside),
        ("both: sweep, to its exit", both_["sweep"], both_, "", sweep_outcome(both_["sweep"])),
    ]
    for label, figures, sandbox, goal, outcome in rows:
        print(
            f"{label:<27}{figures['wall_s']:>8.1f}{figures['physical_limit_s']:>9.0f}"
            f"{figures['ratio_to_limit']:>7.3f}  {goal:<9}{sandbox['throttled_429']:>5}"
            f"{sandbox['max_in_window']:>12}  {outcome}"
        )
    print(
        "\n  the sweep's GETs at DVSA between the batch check's first and last: "
        f"{both_['sweep']['gets_amid_batch']:,}"
    )
    print(
        "  limits: N / 25 s; 2N / 25 s for the sweep that shares DVSA with the batch. "
        "Goals: no 429s, at most 25 GETs in any second"
    )


def sweep_outcome(figures: Json) -> str:
    return f"exit {figures['exit_code']}, {figures['drifts']} drifts, {figures['unchecked']} unchecked"


def show_live(report: Json) -> None:
    count, code, phase = report["options"]["vins"], report["code"], report["live_beside_sweep"]
    live, swept = phase["live"], phase["sweep"]
    edits = f", uncommitted edits to {len(code['modified'])} files" if code["modified"] else ""
    print(
        f"\nreconcile_sweep --live: a sweep of {count:,} vehicles, one worker (local mode), strict 25/s "
        f"sandbox;\n  once it has begun, a live create and a live get each second for {live['seconds']} s"
    )
    print(f"  code: {code['commit']}{edits}\n")
    header = "live verb  published  arrived  p50 ms  p99 ms  max ms  goal      429s"
    print(header + "\n" + "-" * len(header))
    goal = f"< {GOAL_LIVE_MS / 1000:g} s"
    for verb, throttled in (("create", live["creates_throttled_429"]), ("get", phase["throttled_429"])):
        figures = live[verb]
        print(
            f"{verb:<9}{figures['published']:>11}{figures['arrived']:>9}{ms(figures['p50_ms'])}"
            f"{ms(figures['p99_ms'])}{ms(figures['max_ms'])}  {goal:<8}{throttled:>6}"
        )
    if not live["create"]["pairing_certain"]:
        print("  creates paired with arrivals by order, not surely: the figures may mislead")
    if not live["all_outcomes"]:
        print("  not every live command had its outcome within 60 s of the last publish")
    print(
        f"\n  sweep, to its exit: {swept['wall_s']:.1f} s against {swept['physical_limit_s']:.1f} s "
        f"((N + {live['seconds']}) / 25 s: {swept['ratio_to_limit']:.3f} times), {sweep_outcome(swept)}; "
        f"{swept['gets_after_live']:,} of its GETs after the last live publish"
    )
    print(f"  GETs at DVSA: {phase['throttled_429']} 429s, at most {phase['max_in_window']} in any second")


def ms(value: float | None) -> str:
    return f"{value:>8.1f}" if value is not None else f"{'-':>8}"


def save(report: Json) -> Path:
    kind = "reconcile_sweep_live" if "live_beside_sweep" in report else "reconcile_sweep"
    path = RESULTS / f"{kind}-{report['options']['vins']}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--vins",
        type=int,
        default=None,
        help=f"vehicles swept and VINs checked per phase ({SWEEP_VINS:,}; with --live {LIVE_VINS:,})",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help=f"only live work beside a sweep: a live create and get each second for {LIVE_SECONDS} s",
    )
    args = parser.parse_args(argv)
    count = args.vins if args.vins is not None else LIVE_VINS if args.live else SWEEP_VINS
    if count < 1:
        parser.error("--vins must be at least 1")
    if args.live:
        report = asyncio.run(run_live(count))
        show_live(report)
    else:
        report = asyncio.run(run(count))
        show(report)
    print(f"  written: {save(report).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
