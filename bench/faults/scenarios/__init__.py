"""The scenarios of the fault-and-load suite, in the order they run, each imported only when it runs.

Each scenario module has ``async def run(mode: Mode) -> Figures``.  They are imported lazily, so a
scenario whose module is missing or broken fails alone, not the whole suite.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import cast

from bench.faults.figures import Figures
from bench.faults.harness import Mode

SCENARIOS: dict[str, str] = {
    "crash": "bench.faults.scenarios.crash",
    "broker": "bench.faults.scenarios.broker",
    "coordination": "bench.faults.scenarios.coordination",
    "dvsa": "bench.faults.scenarios.dvsa",
    "bad_input": "bench.faults.scenarios.bad_input",
    "other_language": "bench.faults.scenarios.other_language",
    "cluster": "bench.faults.scenarios.cluster",
    "redis_failover": "bench.faults.scenarios.redis_failover",
    "store_restart": "bench.faults.scenarios.store_restart",
    "soak": "bench.faults.scenarios.soak",
}
LONG_ONLY = frozenset({"soak"})  # not part of the short suite (CI)

Scenario = Callable[[Mode], Awaitable[Figures]]


def load(name: str) -> Scenario:
    """Scenario ``name``'s ``run``; KeyError for an unknown name, ImportError for a missing module."""
    module = importlib.import_module(SCENARIOS[name])
    return cast(Scenario, module.run)
