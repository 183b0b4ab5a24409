"""Counting in time windows: the most events in any one window, the figure DVSA's limit is about."""

from __future__ import annotations


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` in any half-open window of ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
