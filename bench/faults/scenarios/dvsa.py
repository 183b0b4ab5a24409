"""DVSA faults: the sandbox answers 10% of calls 500/503, withholds 5% (applied, answered too late), drops 2%
without an answer, refuses everything with 429 during a storm, and its token endpoint goes down.

None of these is permanent, so every command must end applied (or already applied, when a withheld or
dropped call had in fact reached DVSA) and nothing may be dead-lettered.  The sandbox's tokens live a
short while (half the outage), so the fleet's token lapses during the token outage and has to be
renewed after it.  The 429s of the storm are DVSA's doing and expected; the promise of no 429 is about
the fleet's own pacing, so the two are counted apart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence

from bench.faults.figures import Figures, Json
from bench.faults.harness import Mode, fault_run
from bench.faults.scenarios.outages import judge_lasting_fault
from bench.faults.workload import Workload
from recalls.shared.contracts import VERBS

WORKERS = 3
FAULTS = {"error_rate": 0.10, "timeout_rate": 0.05, "drop_rate": 0.02}
HANG_S = 15.0  # a withheld answer comes after this long: past the worker's 10 s DVSA timeout
SEED = 8  # the sandbox's fault dice, so runs are comparable


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(300, 3000))
    storm_s, outage_s = mode.size(3, 10), mode.size(8, 30)
    flags = ("--token-ttl", str(max(1, outage_s // 2)), "--seed", str(SEED))
    async with fault_run("dvsa", workers=WORKERS, sandbox_flags=flags) as fleet:
        await fleet.sandbox.faults(**FAULTS, hang_seconds=HANG_S)
        await fleet.publish(workload.commands)
        await asyncio.sleep(2)  # the scenario's cadence: the fleet at pace under the steady faults first
        fleet.fault(f"429 storm {storm_s} s")
        storm_at = fleet.fault_stamps[-1][1]
        await fleet.sandbox.faults(storm_seconds=storm_s)
        await asyncio.sleep(storm_s + 2)  # the storm, then pace again before the next fault
        fleet.fault(f"token endpoint down {outage_s} s")
        outage_at = fleet.fault_stamps[-1][1]
        await fleet.sandbox.faults(token_outage_seconds=outage_s)
        stalled = await fleet.stall(workload.message_ids, timeout=mode.size(150, 600))
        figures = await fleet.figures(workload)
        journal = await fleet.sandbox.requests()
        failed = [event for event in fleet.outcomes.values() if event.result == "failed"]
        letters = [
            f"{letter.routing_key}: {letter.reason} ({letter.last_error})"
            for letter in await fleet.dead_letters()
        ]
    judge_lasting_fault(figures, journal, storm_at, storm_at + storm_s)
    judge_lasting_fault(figures, journal, outage_at, outage_at + outage_s)
    figures.mode = mode.name
    figures.extra |= {"workers": WORKERS, "faults": FAULTS, "injected": _injected(journal)}
    figures.extra |= {"token_ttl_s": int(flags[1]), "dead_letter_reasons": letters[:10]}
    _judge(figures, journal, failed=len(failed), stalled=stalled)
    return figures


def _injected(journal: Sequence[Json]) -> dict[str, int]:
    """What the sandbox played, by fault, from its journal (token_outage: refused token requests)."""
    return dict(Counter(entry["fault"] for entry in journal if entry["fault"]))


def _judge(figures: Figures, journal: Sequence[Json], *, failed: int, stalled: str) -> None:
    """The storm's 429s are expected; only 429s the fleet's own pacing earned break the promise."""
    storm = sum(entry["status"] == 429 and entry["fault"] == "storm" for entry in journal)
    own = sum(
        entry["status"] == 429 and entry["fault"] != "storm" and entry["verb"] in VERBS for entry in journal
    )
    figures.extra |= {
        "throttled_429_expected": storm,
        "throttled_429_own": own,
        "throttled_429_note": "throttled_429 counts every 429 the sandbox answered: "
        f"{storm} refused by the injected 429 storm (expected), {own} earned by the fleet's own pacing",
        "failed_outcomes": failed,
    }
    figures.problems = [p for p in figures.problems if not p.startswith("DVSA answered")]
    figures.ok = not figures.problems
    if own:
        figures.problem(f"DVSA answered {own} 429s outside the storm (the fleet's own pacing)")
    if failed:
        figures.problem(f"{failed} commands ended failed; none of these faults is permanent")
    if stalled:
        figures.problem(stalled)
