"""How fast ``recalls import`` publishes a large historic file, against a bare aio-pika loop.

1. Writes a CSV of ``--rows`` rows in DVSA's SFTP format (default 1,000,000).
2. Bare loop: publishes the same create messages (same JSON bodies and properties) to the bulk create
   queue with publisher confirms, 1,000 outstanding at a time, with nothing else: no CSV, no checks, no
   journal.  The ceiling for a Python client on this machine.
3. Empties the queue, then runs ``recalls import FILE`` as a child process (the real command, with its
   journal on SQLite) and samples its resident memory every 0.5 s: the command's process and the
   process it publishes from, added up.

Prints rows per second for both and their ratio (goal >= 0.9), and the import's peak memory (goal: flat,
under 200 MB).  Writes ``bench/results/import_throughput.json``.  Asserts nothing.

    .venv/bin/python bench/import_throughput.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import msgspec

from recalls.producers.snapshot_csv import create_message_id
from recalls.shared.amqp import connect
from recalls.shared.contracts import CreateCommand
from recalls.shared.settings import Settings, load_settings
from recalls.shared.topology import Topology, declare, delete

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 1000
START = dt.date(2024, 1, 1)
CAMPAIGN = "HIST1"
GOAL_RATIO = 0.9
Json = dict[str, Any]


def vin(tag: str, n: int) -> str:
    return f"{tag[:6].upper()}{n:011d}"


def write_file(path: Path, tag: str, rows: int) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["VIN", "ManufacturerRecallCampaignReference", "DVSACampaignReference", "RecallCampaignStartDate"]
        )
        for n in range(rows):
            writer.writerow([vin(tag, n), CAMPAIGN, "", START.isoformat()])


def message(tag: str, n: int, batch: str) -> aio_pika.Message:
    command = CreateCommand(
        message_id=create_message_id(vin(tag, n), CAMPAIGN, None, START),
        correlation_id=batch,
        vin=vin(tag, n),
        manufacturer_campaign_reference=CAMPAIGN,
        recall_campaign_start_date=START,
    )
    return aio_pika.Message(
        msgspec.json.encode(command),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=command.message_id,
        correlation_id=batch,
        timestamp=command.issued_at,
        type="create",
    )


async def bare_loop(settings: Settings, tag: str, rows: int) -> float:
    """Rows per second of plain aio-pika publishing with confirms, ``CHUNK`` outstanding."""
    topology = Topology(settings.prefix, settings.retry_tiers)
    connection = await connect(settings.amqp_url.get_secret_value(), name="bench-bare-loop")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.commands_exchange)
        routing_key = topology.routing_key("create", "bulk")
        batch = uuid.uuid4().hex
        started = time.perf_counter()
        for first in range(0, rows, CHUNK):
            await asyncio.gather(
                *(
                    exchange.publish(message(tag, n, batch), routing_key, mandatory=True)
                    for n in range(first, min(first + CHUNK, rows))
                )
            )
        seconds = time.perf_counter() - started
        await (await channel.get_queue(topology.command_queue("create", "bulk"))).purge()
    return rows / seconds


async def run_import(settings: Settings, path: Path, database: Path) -> Json:
    """``recalls import`` as a child process: its rows per second and resident memory over time."""
    env = {**os.environ, "RECALLS_PREFIX": settings.prefix, "RECALLS_SQLITE_PATH": str(database)}
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from recalls.cli.main import main; main()",
        "import",
        str(path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    samples: list[float] = []
    waiting = asyncio.create_task(child.communicate())
    while not waiting.done():
        samples.append(resident_mb(child.pid))
        await asyncio.wait({waiting}, timeout=0.5)
    out, _ = waiting.result()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"recalls import exited {child.returncode}: {out.decode()[-500:]}")
    samples = [sample for sample in samples if sample > 0]
    tenth = max(1, len(samples) // 10)
    return {
        "seconds": round(seconds, 2),
        "summary": out.decode().strip().splitlines()[-2:],
        "rss_mb_peak": max(samples),
        "rss_mb_at_10_50_90_percent": [samples[tenth], samples[len(samples) // 2], samples[-tenth]],
    }


def resident_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the import publishes from a child process)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return round(sum(_own_resident_mb(int(child)) for child in children) + _own_resident_mb(pid), 1)


def _own_resident_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(rows: int) -> None:
    tag = uuid.uuid4().hex[:6]
    settings = load_settings(prefix=f"bench-{tag}")
    topology = Topology(settings.prefix, settings.retry_tiers)
    connection = await connect(settings.amqp_url.get_secret_value(), name="bench-import")
    async with connection:
        channel = await connection.channel()
        await declare(channel, topology)
        try:
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "historic.csv"
                await asyncio.to_thread(write_file, path, tag, rows)
                bare = await bare_loop(settings, tag, rows)
                imported = await run_import(settings, path, Path(scratch) / "journal.db")
        finally:
            await delete(channel, topology)
    rate = rows / imported["seconds"]
    report = {"rows": rows, "bare_loop_per_s": round(bare), "import_per_s": round(rate)} | imported
    report["ratio"] = round(rate / bare, 3)
    show(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "import_throughput.json").write_text(json.dumps(report, indent=2) + "\n")


def show(report: Json) -> None:
    print(f"import_throughput: {report['rows']:,} rows")
    print(
        f"  bare aio-pika loop:  {report['bare_loop_per_s']:,} rows/s (publish with confirms, nothing else)"
    )
    print(f"  recalls import:      {report['import_per_s']:,} rows/s ({report['seconds']} s in all)")
    print(f"  ratio:               {report['ratio']} (goal >= {GOAL_RATIO})")
    low, mid, high = report["rss_mb_at_10_50_90_percent"]
    print(f"  import memory:       peak {report['rss_mb_peak']} MB; at 10/50/90% {low}/{mid}/{high} MB")
    print(f"  summary:             {' | '.join(report['summary'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().rows))
