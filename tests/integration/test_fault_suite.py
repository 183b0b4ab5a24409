"""The fault-and-load suite's short version: each scenario keeps the fleet's promises under its faults.

One test per scenario of :data:`bench.faults.scenarios.SCENARIOS` except the long-only soak.  A scenario
whose module is missing fails its own test with the import error.  Only the promises are asserted (lost,
applied twice, 429s, dead letters, worker crashes, and each scenario's own), never timings: those are
figures for the README.
"""

from __future__ import annotations

import pytest

from bench.faults.harness import Mode
from bench.faults.scenarios import LONG_ONLY, SCENARIOS, load

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", [name for name in SCENARIOS if name not in LONG_ONLY])
async def test_scenario_keeps_the_promises(name: str) -> None:
    figures = await load(name)(Mode(long=False))
    said = f"{name}: {figures.problems}"
    assert figures.commands_in > 0, said
    assert figures.lost == 0, said
    assert figures.applied_twice == 0, said
    assert figures.throttled_429 == figures.extra.get("throttled_429_expected", 0), said  # a storm's own
    assert figures.dead_lettered == figures.extra.get("dead_expected", 0), said
    assert figures.worker_crashes == 0, said
    # A scenario's own promises (bad input's files and requests, consumers back after a broker loss, ...)
    # are problems too; only a recovery time, a figure for the README, is not asserted here.
    assert [p for p in figures.problems if not p.startswith("no recovery")] == [], said
