"""Which retry tier a failed attempt goes to, or whether it has had its last chance.

Ordinary failures climb one tier per attempt and dead-letter after the last.  A 404 on fix or delete
climbs the same tiers but stays on the last one until the not-found horizon has passed since the fleet
first saw the command, since its create may still be queued.  A 429's Retry-After sets a floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workers.decisions import Fail, Retry


@dataclass(frozen=True)
class Later:
    tier: int  # index into the retry tiers


def schedule(
    retry: Retry,
    *,
    attempts_made: int,
    first_seen: float,
    now: float,
    tiers: Sequence[float],
    not_found_horizon: float,
) -> Later | Fail:
    """``attempts_made`` counts the attempt that just failed."""
    last = len(tiers) - 1
    if retry.not_found:
        if now - first_seen >= not_found_horizon:
            hours = not_found_horizon / 3600
            return Fail(f"{retry.reason}: still not found after {hours:g} h", kind="not_found")
        tier = min(attempts_made - 1, last)
    else:
        if attempts_made > len(tiers):
            return Fail(f"{retry.reason}: gave up after {attempts_made} attempts", kind="retries_exhausted")
        tier = attempts_made - 1
    while tier < last and tiers[tier] < retry.min_delay:
        tier += 1
    return Later(tier)
