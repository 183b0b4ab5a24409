"""``python -m bench.faults [--long] [--only NAME,...] [--out PATH]``: run the fault-and-load suite.

Runs the scenarios in order (soak only in long mode or when named), prints a table, writes the figures to
``bench/results/faults-short.json`` or ``faults-long.json`` (with ``--only``, only the named scenarios'
entries change), then regenerates the README's tables through :mod:`bench.report`.  A scenario that fails
to run is recorded as not ok, with why; the suite goes on with the next.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report
from bench.faults.figures import Figures
from bench.faults.harness import Mode
from bench.faults.scenarios import LONG_ONLY, SCENARIOS, load
from bench.fleet_throughput import RESULTS, code_version

Json = dict[str, Any]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--long", action="store_true", help="the long version (soak included)")
    parser.add_argument("--only", help=f"comma-separated scenarios, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/faults-<mode>.json)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",")] if args.only else None
    unknown = [name for name in names or [] if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    args.names = names or [name for name in SCENARIOS if args.long or name not in LONG_ONLY]
    return args


async def run_one(name: str, mode: Mode) -> Figures:
    """One scenario's figures; a scenario that raises gets figures that say so."""
    try:
        figures = await load(name)(mode)
    except Exception as error:  # one broken scenario must not stop the suite
        detail = "".join(traceback.format_exception_only(error)).strip()
        return Figures.failed(name, mode.name, f"the scenario did not finish: {detail}")
    figures.mode = mode.name
    return figures


def row(figures: Json) -> str:
    recoveries = [f["recovery_s"] for f in figures["faults"] if f["recovery_s"] is not None]
    worst = f"{max(recoveries):.1f}" if recoveries else "-"
    busiest = max(figures["max_in_window"].values(), default=0)
    return (
        f"{figures['scenario']:<15}{figures['commands_in']:>6}{figures['applied']:>8}"
        f"{figures['already_applied']:>8}{figures['dead_lettered']:>6}{figures['lost']:>6}"
        f"{figures['applied_twice']:>7}{figures['throttled_429']:>6}{busiest:>6}{len(figures['faults']):>7}"
        f"{worst:>9}{figures['worker_crashes']:>8}{figures['rss_mb_start']:>8.0f}{figures['rss_mb_end']:>6.0f}"
        f"{figures['duration_s']:>8.0f}  {'ok' if figures['ok'] else 'NOT OK'}"
    )


def show(results: dict[str, Json]) -> None:
    header = (
        f"{'scenario':<15}{'in':>6}{'applied':>8}{'already':>8}{'dead':>6}{'lost':>6}{'twice':>7}"
        f"{'429':>6}{'max/s':>6}{'faults':>7}{'worst s':>9}{'crashes':>8}{'RSS MB':>8}{'end':>6}{'wall s':>8}"
    )
    print(header + "\n" + "-" * (len(header) + 8))
    for figures in results.values():
        print(row(figures))
        for problem in figures["problems"]:
            print(f"    {problem[:300]}")


def save(path: Path, fresh: dict[str, Json], merge: bool) -> dict[str, Json]:
    """Write the scenarios' entries; merging keeps the other scenarios' entries of the file."""
    kept = json.loads(path.read_text()).get("scenarios", {}) if merge and path.exists() else {}
    scenarios = {name: ({**kept, **fresh})[name] for name in SCENARIOS if name in {**kept, **fresh}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"scenarios": scenarios}, indent=2) + "\n")
    return scenarios


async def run_all(names: Sequence[str], mode: Mode) -> dict[str, Json]:
    stamp = {"code": code_version(), "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    results: dict[str, Json] = {}
    for name in names:
        print(f"running {name} ({mode.name})...", flush=True)
        results[name] = (await run_one(name, mode)).as_json() | stamp
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    mode = Mode(long=args.long)
    results = asyncio.run(run_all(args.names, mode))
    out = args.out or RESULTS / f"faults-{mode.name}.json"
    save(out, results, merge=args.only is not None)
    show(results)
    print(f"written: {out}")
    report.main([])
    return 0 if all(figures["ok"] for figures in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
