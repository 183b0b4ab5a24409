"""Which retry tier a failed attempt goes to, or whether it has had its last chance.

Ordinary failures climb one tier per failure and dead-letter after the last.  Waits are not failures:
a 404 on fix or delete (its create may still be queued) climbs the same tiers but stays on the last one
until the not-found horizon has passed since the fleet first saw the command, and an attempt that had no
token retries at the first tiers without end (an operator can mend credentials; the endpoint may
come back).
Neither uses up the failures allowed.  A 429's Retry-After sets a floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recalls.workers.decisions import Fail, Retry

# A wait for a token climbs no higher than the third tier: the token endpoint's own backoff keeps it from
# being hammered, and commands resume soon after it is back.
WAITING_TIER = 2


@dataclass(frozen=True)
class Later:
    tier: int  # index into the retry tiers


def schedule(
    retry: Retry,
    *,
    attempts_made: int,
    waits: int = 0,
    first_seen: float,
    now: float,
    tiers: Sequence[float],
    not_found_horizon: float,
) -> Later | Fail:
    """``attempts_made`` counts the attempt that just failed; ``waits``, those of them that were waits."""
    last = len(tiers) - 1
    if retry.not_found:
        if now - first_seen >= not_found_horizon:
            hours = not_found_horizon / 3600
            return Fail(f"{retry.reason}: still not found after {hours:g} h", kind="not_found")
        tier = min(attempts_made - 1, last)
    elif retry.waiting:
        tier = min(attempts_made - 1, last, WAITING_TIER)
    else:
        failures = attempts_made - waits
        if failures > len(tiers):
            return Fail(f"{retry.reason}: gave up after {failures} failed attempts", kind="retries_exhausted")
        tier = max(failures - 1, 0)
    while tier < last and tiers[tier] < retry.min_delay:
        tier += 1
    return Later(tier)
