"""How long a historic load takes to reach DVSA: ``recalls import`` of N rows, a worker, the strict sandbox.

A worker runs first (as a deployed fleet would), then ``recalls import`` publishes the file to the bulk
create lane, and the run ends with the last outcome event.  DVSA's 25 creates per second make the
physical limit N / 25 seconds (4,000 s for 100,000 rows); the figure of merit is that limit divided by
the time taken.  Also printed: the import's own time, 429s and the busiest second at the sandbox.

    .venv/bin/python -m bench.historic_load [--rows 100000]

Writes ``bench/results/historic_load-<rows>.json``.  Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fleet_throughput import Options, running_workers, sandbox_and_broker, subscribe
from bench.import_throughput import write_file
from recalls.shared.settings import Settings, load_settings
from recalls.shared.topology import Topology

RESULTS = Path(__file__).resolve().parent / "results"
ONE_WORKER = Options(processes=1, per_verb=0, redis=None, samples=0, gap=0.0, lane="bulk")


async def import_file(settings: Settings, path: Path) -> float:
    """Run ``recalls import``; return its wall time."""
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from recalls.cli.main import main; main()", "import", str(path),
        env={**os.environ, "RECALLS_PREFIX": settings.prefix},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"recalls import exited {child.returncode}: {out.decode()[-500:]}")
    return time.perf_counter() - started


async def main(rows: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["RECALLS_SQLITE_PATH"] = str(Path(scratch) / "ledger.db")  # the worker's and import's
        path = Path(scratch) / "historic.csv"
        await asyncio.to_thread(write_file, path, tag, rows)
        async with sandbox_and_broker(load_settings(prefix=f"bench-{tag}")) as (settings, admin, channel):
            outcomes = await subscribe(channel, Topology(settings.prefix, settings.retry_tiers))
            async with running_workers(settings, ONE_WORKER):
                started = time.time()
                import_s = await import_file(settings, path)
                async with asyncio.timeout(rows / settings.rate_limit * 2 + 120):
                    while len(outcomes.events) < rows:
                        outcomes.changed.clear()
                        await outcomes.changed.wait()
            stats = (await admin.get("/__admin/stats")).raise_for_status().json()
    took = outcomes.last_at - started
    physical = rows / settings.rate_limit
    results = [event.result for event in outcomes.events.values()]
    return {
        "rows": rows,
        "import_s": round(import_s, 1),
        "to_dvsa_s": round(took, 1),
        "physical_limit_s": physical,
        "ratio": round(physical / took, 4),
        "applied": results.count("applied"),
        "throttled_429": stats["create"]["throttled"],
        "max_in_window": stats["create"]["max_in_window"],
    }


def show(report: dict[str, Any]) -> None:
    print(f"historic_load: {report['rows']:,} rows, one worker, strict 25/s sandbox")
    print(f"  import (publish to the bulk lane): {report['import_s']} s")
    print(
        f"  to DVSA (import start to last outcome): {report['to_dvsa_s']} s; physical limit "
        f"{report['physical_limit_s']:.0f} s; ratio {report['ratio']}"
    )
    print(
        f"  applied {report['applied']:,}; 429s {report['throttled_429']}; "
        f"most creates in any 1 s {report['max_in_window']}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000)
    report = asyncio.run(main(parser.parse_args().rows))
    show(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"historic_load-{report['rows']}.json").write_text(json.dumps(report, indent=2) + "\n")
