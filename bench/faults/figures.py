"""A scenario's figures, and what is computed from the sandbox's journal, stats and state.

The sandbox stamps every request's arrival, so its journal is where DVSA's view is read: the 429s, the
busiest second of each verb, double applications and the recovery after each fault.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recalls.shared.contracts import VERBS

Json = dict[str, Any]
BASELINE_S = 5.0  # the rate before a fault is measured over this many seconds
RECOVERED_SHARE = 0.8  # of that rate, in a one-second window, counts as recovered


@dataclass
class Figures:
    """What one scenario run produced; JSON-able with :meth:`as_json`."""

    scenario: str
    mode: str
    commands_in: int
    applied: int
    already_applied: int
    dead_lettered: int
    lost: int
    applied_twice: int
    throttled_429: int
    max_in_window: dict[str, int]
    faults: list[Json]  # {label, at, recovery_s}
    worker_crashes: int
    rss_mb_start: float
    rss_mb_end: float
    duration_s: float
    extra: Json = field(default_factory=dict)
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    @classmethod
    def failed(cls, scenario: str, mode: str, why: str) -> Figures:
        """The figures of a scenario that could not run to the end: nothing measured, one problem."""
        figures = cls(scenario, mode, 0, 0, 0, 0, 0, 0, 0, {}, [], 0, 0.0, 0.0, 0.0)
        figures.problem(why)
        return figures

    def problem(self, text: str) -> None:
        """Record a promise or goal that did not hold; the scenario is then not ok."""
        self.problems.append(text)
        self.ok = False

    def as_json(self) -> Json:
        return dataclasses.asdict(self)


def throttled(stats: Json) -> int:
    """429s DVSA answered, over every verb."""
    return sum(int(stats[verb]["throttled"]) for verb in VERBS)


def max_in_window(stats: Json) -> dict[str, int]:
    """Per verb, the most arrivals in any one-second window (the sandbox keeps this count itself)."""
    return {verb: int(stats[verb]["max_in_window"]) for verb in VERBS}


def applied_twice(journal: Sequence[Json], recalls: Sequence[Json], creates: int) -> list[str]:
    """Every sign of a change applied twice in effect, each described.

    A delete's VIN is in its path, so two 2xx deletes of one path show it; a create's VIN travels in its
    body, so only the number of 2xx creates beyond the ``creates`` the run sent can show it.  A recall
    held twice in the sandbox's state is the other sign.  A re-sent create answered "already exists" is
    at-least-once delivery doing its job, not a double application.
    """
    succeeded = [entry for entry in journal if _is_2xx(entry["status"])]
    found = [
        f"{path} deleted {count} times"
        for path, count in Counter(e["path"] for e in succeeded if e["verb"] == "delete").items()
        if count > 1
    ]
    created = sum(entry["verb"] == "create" for entry in succeeded)
    if created > creates:
        found.append(f"{created} creates succeeded for {creates} create commands")
    held = Counter((r["vin"], r["manufacturerCampaignReference"]) for r in recalls)
    found += [f"{vin} {ref} held {count} times" for (vin, ref), count in held.items() if count > 1]
    return found


def _is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def recovery(journal: Sequence[Json], at: float) -> float | None:
    """Seconds from a fault at ``at`` until the fleet's DVSA calls are back to pace; None if never.

    Back to pace: a one-second window, starting at or after ``at``, holding at least 80% of the arrivals
    per second of the 5 s before the fault.  Only the verbs that still have at least a second's worth of
    those arrivals ahead count, so a verb whose work is running out is not expected back to full pace;
    when no verb has, the work is done and that is the recovery.  No calls before the fault: 0.
    """
    api = [entry for entry in journal if entry["verb"] in VERBS]
    by_verb = {verb: sorted(e["arrival"] for e in api if e["verb"] == verb) for verb in VERBS}
    before = {verb: _count(times, at - BASELINE_S, at) / BASELINE_S for verb, times in by_verb.items()}
    if not any(before.values()):
        return 0.0
    starts: list[float] = [at, *sorted(e["arrival"] for e in api if e["arrival"] >= at)]
    for start in starts:
        active = [verb for verb in VERBS if 0 < before[verb] <= _ahead(by_verb[verb], start)]
        wanted = RECOVERED_SHARE * sum(before[verb] for verb in active)
        if sum(_count(by_verb[verb], start, start + 1) for verb in active) >= wanted:
            return round(start - at, 3)
    return None


def _ahead(times: list[float], start: float) -> int:
    """How many of the sorted ``times`` are at or after ``start``."""
    return len(times) - bisect.bisect_left(times, start)


def _count(times: list[float], low: float, high: float) -> int:
    """How many of the sorted ``times`` fall in [low, high)."""
    return bisect.bisect_left(times, high) - bisect.bisect_left(times, low)
