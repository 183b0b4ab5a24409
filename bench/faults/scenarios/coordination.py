"""Coordination loss: Redis, which holds the fleet's rate budget and OAuth token, stops mid-run, comes back.

Three fleet-mode workers drain mixed commands; Redis is shut down (without saving, so it returns empty:
no rate windows, no token) and restarted a few seconds later, always, whatever happens meanwhile.  While
it is away the workers must stop calling DVSA rather than pace themselves blind, and resume by
themselves.  The promises: no 429 from DVSA, nothing lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from bench.faults.figures import Figures, Json
from bench.faults.harness import REDIS_URL, FaultRun, Mode, fault_run
from bench.faults.scenarios.outages import judge_lasting_fault, run_tool
from bench.faults.workload import Workload
from recalls.shared.contracts import VERBS

WORKERS = 3
REDIS_PORT = "6379"
RESTART = ("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", REDIS_PORT)
RESTART_OPTIONS = ("--save", "", "--appendonly", "no")  # exactly as the shared Redis was started
ANSWER_PATIENCE = 30.0  # seconds Redis has to answer again after a start


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(600, 3000))
    outages: list[tuple[float, float, float]] = []  # stopping, stopped (no longer answering), answering
    async with fault_run("coordination", workers=WORKERS) as fleet:
        await fleet.publish(workload.commands)
        for n in range(mode.size(1, 3)):
            await asyncio.sleep(mode.size(3, 8))  # the scenario's cadence: the fleet at pace before each stop
            outages.append(await _outage(fleet, seconds=mode.size(5, 15), number=n + 1))
        stalled = await fleet.stall(workload.message_ids, timeout=mode.size(90, 400))
        figures = await fleet.figures(workload)
        journal = await fleet.sandbox.requests()
    for began, _, ended in outages:
        judge_lasting_fault(figures, journal, began, ended)
    figures.mode = mode.name
    figures.extra |= {
        "workers": WORKERS,
        "redis_down_s": [round(ended - began, 1) for began, _, ended in outages],
        "redis_shutdown_s": [round(down - began, 2) for began, down, _ in outages],
        # Calls while Redis shut down are those already let go; once it is down, none should be.
        "dvsa_calls_while_stopping": [_calls(journal, began, down) for began, down, _ in outages],
        "dvsa_calls_while_redis_down": [_calls(journal, down, ended) for _, down, ended in outages],
    }
    if stalled:
        figures.problem(stalled)
    return figures


def _calls(journal: Sequence[Json], low: float, high: float) -> int:
    return sum(low <= entry["arrival"] < high and entry["verb"] in VERBS for entry in journal)


async def _outage(fleet: FaultRun, *, seconds: float, number: int) -> tuple[float, float, float]:
    """Shut Redis down for about ``seconds``, restart it in any case; when it was told to stop, stopped
    answering, and answered again."""
    fleet.fault(f"Redis stopped #{number} ({seconds:g} s)")
    began = fleet.fault_stamps[-1][1]
    try:
        await run_tool("redis-cli", "-p", REDIS_PORT, "shutdown", "nosave")
        await _until(lambda answers: not answers, "stop answering after its shutdown")
        down = time.time()
        await asyncio.sleep(seconds)  # the outage's length is the fault itself
    finally:
        await _restart()
    return began, down, time.time()


async def _restart() -> None:
    """Start Redis as the shared one was started; return once it answers (RuntimeError if it never does)."""
    if not await _answers():
        await run_tool(*RESTART, *RESTART_OPTIONS)
    await _until(lambda answers: answers, "answer after its restart")


async def _until(wanted: Callable[[bool], bool], what: str) -> None:
    deadline = time.monotonic() + ANSWER_PATIENCE
    while not wanted(await _answers()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis did not {what} within {ANSWER_PATIENCE:g} s")
        await asyncio.sleep(0.2)  # Redis offers nothing to await while it starts or stops


async def _answers() -> bool:
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()
