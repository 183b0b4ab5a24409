"""DVSA's per-verb rate limit in its strictest reading, as sliding logs of arrival times.

A request arriving at time *t* is admitted only if fewer than ``limit`` requests of its verb were admitted
in the half-open second ``(t - 1, t]``.  That guarantees no one-second window ``[s, s + 1)`` ever holds more
than ``limit`` admitted requests, however the arrivals bunch: a fixed-window or token-bucket limiter would
let up to twice the limit through across a boundary, and hide a client that bursts.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 1.0


class SlidingWindowLog:
    """Arrival times of the last window, oldest first.  Times must be added in non-decreasing order."""

    __slots__ = ("_times", "_window")

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._times: deque[float] = deque()
        self._window = window

    def count(self, now: float) -> int:
        """How many times in ``(now - window, now]``."""
        self._forget_before(now)
        return len(self._times)

    def add(self, now: float) -> int:
        """Record an arrival; return how many are now in the window, this one included."""
        self._forget_before(now)
        self._times.append(now)
        return len(self._times)

    def seconds_until_room(self, now: float) -> float:
        """Seconds until the oldest time leaves the window (0 if the log is empty)."""
        self._forget_before(now)
        if not self._times:
            return 0.0
        return max(0.0, self._times[0] + self._window - now)

    def clear(self) -> None:
        self._times.clear()

    def _forget_before(self, now: float) -> None:
        times, horizon = self._times, now - self._window
        while times and times[0] <= horizon:
            times.popleft()


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's answer for one request."""

    admitted: bool
    in_window: int  # admitted requests in the window after this decision
    retry_after: int  # whole seconds to wait (0 when admitted); what the Retry-After header says


class SlidingWindowLimiter:
    """Admits at most ``limit`` requests in any one-second window (see the module docstring)."""

    __slots__ = ("_admitted", "_limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._admitted = SlidingWindowLog()

    def admit(self, now: float) -> Admission:
        """Decide for a request arriving at ``now`` (a ``time.monotonic()`` reading)."""
        in_window = self._admitted.count(now)
        if in_window < self._limit:
            return Admission(admitted=True, in_window=self._admitted.add(now), retry_after=0)
        wait = self._admitted.seconds_until_room(now)
        # Retry-After is whole seconds; round up so a client that obeys it is admitted, and never say 0.
        return Admission(admitted=False, in_window=in_window, retry_after=max(1, math.ceil(wait)))

    def in_window(self, now: float) -> int:
        """Admitted requests in the window ending at ``now``."""
        return self._admitted.count(now)

    def clear(self) -> None:
        self._admitted.clear()
