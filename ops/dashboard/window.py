"""The fleet's figures over the last minutes: every worker's stats added up per second.

Workers send counts per interval (about a second), so a second of the window holds the sum of what
every worker sent for it.  A message is filed under the second its worker sent it, as long as the
worker's clock agrees with ours to within a few seconds; otherwise under the second it arrived, so that
a host with a wrong clock still shows up now rather than minutes away or never.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from recalls.shared.contracts import VERBS
from recalls.shared.telemetry import WorkerStats

WINDOW = 300  # seconds the dashboard shows
SEEN_FOR = 5.0  # a worker silent longer than this is no longer counted as running
RATE_OVER = 5  # the "now" rates average this many complete seconds
_CLOCK_SKEW = 5.0


@dataclass
class _Second:
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verb, status)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verb, outcome)
    retries: Counter[str] = field(default_factory=Counter)  # tier
    dead_letters: Counter[str] = field(default_factory=Counter)  # reason
    token_refreshes: int = 0


@dataclass(frozen=True)
class _Seen:
    at: float
    in_flight: int
    token_expires_at: float | None


@dataclass(frozen=True)
class FleetFigures:
    """What the window shows at one moment (``start``: the epoch second of every series' first value)."""

    start: int
    calls: dict[str, list[int]]  # verb -> calls per second, oldest first, the current second left out
    calls_now: dict[str, float]  # verb -> mean calls/s over the last complete seconds
    statuses: dict[str, dict[str, int]]  # verb -> DVSA status -> calls in the window
    outcomes: dict[str, dict[str, int]]  # verb -> outcome -> commands in the window
    retries: dict[str, int]  # tier -> commands sent to it in the window
    retries_now: float
    dead_letters: dict[str, int]  # reason -> commands in the window
    token_refreshes: int  # in the window
    token_expires_in: float | None  # of the newest token a running worker uses
    workers: list[str]  # seen within SEEN_FOR
    in_flight: int  # commands in hand across those workers


class StatsWindow:
    """The last ``seconds`` seconds of the fleet's stats, fed with :meth:`add`."""

    def __init__(self, seconds: int = WINDOW) -> None:
        self._length = seconds
        self._seconds: dict[int, _Second] = {}
        self._workers: dict[str, _Seen] = {}

    def add(self, stats: WorkerStats, now: float) -> None:
        """File ``stats``, which arrived at ``now`` (epoch seconds)."""
        sent = stats.sent_at if abs(stats.sent_at - now) <= _CLOCK_SKEW else now
        second = self._seconds.setdefault(math.floor(sent), _Second())
        for verb, tally in stats.calls.items():
            second.calls.update({(verb, status): count for status, count in tally.items()})
        for verb, tally in stats.outcomes.items():
            second.outcomes.update({(verb, outcome): count for outcome, count in tally.items()})
        second.retries.update(stats.retries)
        second.dead_letters.update(stats.dead_letters)
        second.token_refreshes += stats.token_refreshes
        self._workers[stats.worker] = _Seen(now, stats.in_flight, stats.token_expires_at)
        self._forget_before(now)

    def figures(self, now: float) -> FleetFigures:
        self._forget_before(now)
        end = math.floor(now)  # the current second is still filling: left out
        start = end - self._length
        seconds = [self._seconds.get(moment) for moment in range(start, end)]
        calls: dict[str, list[int]] = {verb: [_calls(second, verb) for second in seconds] for verb in VERBS}
        recent = seconds[-RATE_OVER:]
        running = {name: seen for name, seen in self._workers.items() if now - seen.at <= SEEN_FOR}
        expiries = [seen.token_expires_at for seen in running.values() if seen.token_expires_at is not None]
        kept = [second for second in seconds if second is not None]
        return FleetFigures(
            start=start,
            calls=calls,
            calls_now={verb: sum(series[-RATE_OVER:]) / RATE_OVER for verb, series in calls.items()},
            statuses=_by_verb(sum((second.calls for second in kept), Counter())),
            outcomes=_by_verb(sum((second.outcomes for second in kept), Counter())),
            retries=dict(sum((second.retries for second in kept), Counter())),
            retries_now=sum(second.retries.total() for second in recent if second) / RATE_OVER,
            dead_letters=dict(sum((second.dead_letters for second in kept), Counter())),
            token_refreshes=sum(second.token_refreshes for second in kept),
            token_expires_in=max(expiries) - now if expiries else None,
            workers=sorted(running),
            in_flight=sum(seen.in_flight for seen in running.values()),
        )

    def _forget_before(self, now: float) -> None:
        oldest = math.floor(now) - self._length
        for moment in [moment for moment in self._seconds if moment < oldest]:
            del self._seconds[moment]
        for name in [name for name, seen in self._workers.items() if now - seen.at > self._length]:
            del self._workers[name]


def _calls(second: _Second | None, verb: str) -> int:
    if second is None:
        return 0
    return sum(count for (called, _status), count in second.calls.items() if called == verb)


def _by_verb(tally: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    grouped: dict[str, dict[str, int]] = {verb: {} for verb in VERBS}
    for (verb, label), count in sorted(tally.items()):
        grouped.setdefault(verb, {})[label] = count
    return grouped
