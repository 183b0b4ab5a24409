"""Redis fails over under load: its master is killed, twice, and Sentinel promotes the replica.

The fleet reaches Redis through three Sentinels (``RECALLS_REDIS_URL=redis+sentinel://...``,
:mod:`bench.faults.sentinel`).  Replication is asynchronous, so the new master may lack the last
writes of the limiter's state: the fleet must keep to the limit anyway, by waiting out a full window
after any change of master (:mod:`recalls.shared.redis_hold`).  The promises: no 429, at most the
limit of a verb in any second by the sandbox's own count, nothing lost; and the pause of DVSA calls
each failover caused, from the calls' own arrival times.  A killed master is started again after the
failover as a replica of the new one, so the second kill finds a replica to promote.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence

from bench.faults.figures import Figures, Json
from bench.faults.harness import FaultRun, Mode, fault_run
from bench.faults.sentinel import SentinelSet, sentinel_set
from bench.faults.workload import Workload
from recalls.shared.contracts import VERBS

WORKERS = 3
KILLS = 2
LIMIT = 25


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(1200, 3000))
    failovers: list[dict[str, object]] = []
    async with (
        sentinel_set() as redis,
        fault_run("redis_failover", workers=WORKERS, redis_url=redis.url()) as fleet,
    ):
        await fleet.publish(workload.commands)
        for n in range(KILLS):
            await asyncio.sleep(mode.size(3, 8))  # the scenario's cadence: the fleet at pace before each kill
            failovers.append(await _kill_master(fleet, redis, n + 1))
        stalled = await fleet.stall(workload.message_ids, timeout=mode.size(180, 400))
        figures = await fleet.figures(workload)
        journal = await fleet.sandbox.requests()
    kills = [float(str(failover["killed_at"])) for failover in failovers]
    for failover, at in zip(failovers, kills, strict=True):
        failover["dvsa_pause_s"] = _pause(journal, at)
    figures.extra["over_limit"] = _over_limit(journal, kills)
    figures.mode = mode.name
    figures.extra |= {"workers": WORKERS, "failovers": failovers}
    if stalled:
        figures.problem(stalled)
    return figures


async def _kill_master(fleet: FaultRun, redis: SentinelSet, number: int) -> dict[str, object]:
    old = await redis.master_port()
    fleet.fault(f"Redis master killed #{number}")
    killed_at = time.time()
    await redis.kill(old)
    new = await redis.new_master(old)
    promoted_after = time.time() - killed_at
    await redis.start_data_node(old, replica_of=new)  # never empty as a master: see bench.faults.sentinel
    return {"killed_at": killed_at, "old": old, "new": new, "promoted_after_s": round(promoted_after, 2)}


def _pause(journal: Sequence[Json], at: float) -> float | None:
    """The longest gap between DVSA calls from the kill until 30 s after it: the failover's pause."""
    arrivals = sorted(e["arrival"] for e in journal if e["verb"] in VERBS and at <= e["arrival"] < at + 30)
    gaps = [later - earlier for earlier, later in itertools.pairwise([at, *arrivals])]
    return round(max(gaps), 3) if gaps else None


def _over_limit(journal: Sequence[Json], kills: Sequence[float]) -> list[str]:
    """Each 429 and each call past the limit in a second, as seconds after the kill before it."""
    marks: list[str] = []
    for verb in VERBS:
        arrivals = sorted(e["arrival"] for e in journal if e["verb"] == verb)
        start = 0
        for end, moment in enumerate(arrivals):
            while moment - arrivals[start] >= 1.0:
                start += 1
            if end - start + 1 > LIMIT:
                marks.append(f"{verb} #{end - start + 1} in 1 s at {_since(kills, moment)}")
    marks += [f"429 {e['verb']} at {_since(kills, e['arrival'])}" for e in journal if e["status"] == 429]
    return marks[:40]


def _since(kills: Sequence[float], moment: float) -> str:
    before = [k for k in kills if k <= moment]
    return f"kill {len(before)} + {moment - before[-1]:.3f} s" if before else f"{moment - kills[0]:.3f} s"
