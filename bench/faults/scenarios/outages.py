"""What the broker, coordination and DVSA scenarios share: running the services' own tools, and the recovery
time of a fault that lasts (an outage, a hang) rather than strikes once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bench.faults import figures as measure
from bench.faults.figures import Figures, Json


async def run_tool(*argv: str) -> str:
    """Run a service's command-line tool without blocking the loop; its output, or RuntimeError naming it."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        said = (err or out).decode(errors="replace").strip()[:300]
        raise RuntimeError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed ({process.returncode}): {said}"
        )
    return out.decode(errors="replace").strip()


def judge_lasting_fault(figures: Figures, journal: Sequence[Json], began: float, ended: float) -> None:
    """Recount the recovery of the fault stamped at ``began`` that lasted until ``ended``.

    It counts from the fault's start until the fleet is back to pace after its end: the calls that still
    reached DVSA during the fault (work already in hand) are not a recovery, so they are left out.
    ``after_end_s`` is the part of it after the fault ended.
    """
    outside = [entry for entry in journal if not began <= entry["arrival"] < ended]
    recovery = measure.recovery(outside, began)
    for fault in figures.faults:
        if fault["at"] != began:
            continue
        fault["recovery_s"] = recovery
        fault["after_end_s"] = None if recovery is None else round(recovery - (ended - began), 3)
        problem = f"no recovery after {fault['label']}"
        if recovery is None and problem not in figures.problems:
            figures.problem(problem)
