"""Counters per verb that show how a client treated the sandbox, above all whether it kept the rate limit.

``max_in_window`` is the most arrivals of one verb seen in any one-second window, admitted or not: a client
that respects the limit keeps it at or below the limit, whatever the sandbox did with the excess.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from recalls.sandbox.ratelimit import SlidingWindowLog
from recalls.sandbox.verbs import Verb


class VerbStats:
    """What happened to the requests of one verb."""

    __slots__ = (
        "arrivals",
        "count",
        "dropped",
        "max_admitted_in_window",
        "max_in_window",
        "statuses",
        "throttled",
    )

    def __init__(self) -> None:
        self.arrivals = SlidingWindowLog()
        self.count = 0
        self.statuses: Counter[int] = Counter()
        self.throttled = 0
        self.dropped = 0
        self.max_in_window = 0
        self.max_admitted_in_window = 0

    def arrived(self, now: float, admitted_in_window: int) -> None:
        """Count an arrival at monotonic time ``now``; ``admitted_in_window`` comes from the limiter."""
        self.count += 1
        self.max_in_window = max(self.max_in_window, self.arrivals.add(now))
        self.max_admitted_in_window = max(self.max_admitted_in_window, admitted_in_window)

    def answered(self, status: int | None) -> None:
        """Count the answer; ``None`` means the connection was dropped instead."""
        if status is None:
            self.dropped += 1
            return
        self.statuses[status] += 1
        if status == 429:
            self.throttled += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "throttled": self.throttled,
            "dropped": self.dropped,
            "max_in_window": self.max_in_window,
            "max_admitted_in_window": self.max_admitted_in_window,
        }


class Stats:
    """Per-verb counters plus the token endpoint's."""

    __slots__ = ("token_requests", "tokens_issued", "verbs")

    def __init__(self) -> None:
        self.verbs = {verb: VerbStats() for verb in Verb}
        self.token_requests = 0
        self.tokens_issued = 0

    def clear(self) -> None:
        self.verbs = {verb: VerbStats() for verb in Verb}
        self.token_requests = 0
        self.tokens_issued = 0

    def as_json(self) -> dict[str, Any]:
        view: dict[str, Any] = {verb.value: stats.as_json() for verb, stats in self.verbs.items()}
        view["token_requests"] = self.token_requests
        view["tokens_issued"] = self.tokens_issued
        return view
