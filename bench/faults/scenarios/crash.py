"""Crash: three worker processes drain mixed commands while one of them is SIGKILLed every few seconds.

The killed worker (each in turn) is started again at once.  Its unacknowledged commands go back to their
queues and another worker takes them, so some reach DVSA twice: the promise is that none is applied twice
in effect and none is lost.
"""

from __future__ import annotations

import asyncio
import signal
import uuid

from bench.faults.figures import Figures
from bench.faults.harness import FaultRun, Mode, fault_run
from bench.faults.workload import Workload

WORKERS = 3


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(300, 3000))
    async with fault_run("crash", workers=WORKERS) as fleet:
        await fleet.publish(workload.commands)
        done = asyncio.Event()
        killing = asyncio.create_task(_kill_in_turn(fleet, done, every=mode.size(2, 5)))
        try:
            stalled = await fleet.stall(workload.message_ids, timeout=mode.size(150, 400))
        finally:
            done.set()
            kills = await killing
        figures = await fleet.figures(workload)
    figures.mode = mode.name
    figures.extra |= {"workers": WORKERS, "kills": kills}
    if stalled:
        figures.problem(stalled)
    return figures


async def _kill_in_turn(fleet: FaultRun, done: asyncio.Event, every: float) -> int:
    """SIGKILL worker 0, 1, 2, 0, ... every ``every`` s and start it again, until ``done``; the kill count."""
    kills = 0
    while True:
        try:
            await asyncio.wait_for(done.wait(), every)
        except TimeoutError:
            pass
        else:
            return kills
        index = kills % len(fleet.workers)
        fleet.fault(f"worker {index} SIGKILLed")
        kills += 1
        await fleet.workers[index].kill(signal.SIGKILL)
        await fleet.workers[index].start()
