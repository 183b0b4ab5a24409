"""How often the fleet may call DVSA: never more than the limit of one verb in any one-second window.

DVSA counts requests at arrival.  A bucket of capacity N refilled each second admits up to 2N in a
second, and fixed windows admit 2N across an edge, so calls of a verb are *spaced* instead: one slot
every ``(1 + margin) / limit`` seconds, the margin absorbing the jitter between leaving here and
arriving there.  Anything that limits calls implements :class:`RateLimiter`, so local mode (this
module) and fleet mode (a shared bucket in Redis) are interchangeable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from shared.contracts import VERBS, Verb

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter(Protocol):
    async def acquire(self, verb: Verb) -> None:
        """Return when a call of ``verb`` may be sent now."""

    async def pause(self, verb: Verb, seconds: float) -> None:
        """Send no call of ``verb`` for ``seconds`` (DVSA said 429 with Retry-After)."""


def lateness_tolerance(margin: float) -> float:
    """How late (s) a caller may use its slot: half the slack the margin leaves in a one-second window.

    A call sent later than that could arrive within one second of the call ``limit`` slots after it.
    """
    return max(0.001, margin / 2)


class SpacingLimiter:
    """Local mode: one schedule per verb for this process."""

    def __init__(
        self,
        limit: int,
        margin: float = 0.02,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval = (1 + margin) / limit
        self._tolerance = lateness_tolerance(margin)
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)
        self._paused_until: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)

    async def acquire(self, verb: Verb) -> None:
        while True:
            now = self._clock()
            slot = max(now, self._next_slot[verb], self._paused_until[verb])
            # Claim the slot before sleeping, so concurrent callers queue up behind it in order.
            self._next_slot[verb] = slot + self.interval
            if slot > now:
                await self._sleep(slot - now)
            # Paused meanwhile, or woken too late to send without bunching: take a new slot.
            now = self._clock()
            if now >= self._paused_until[verb] and now - slot <= self._tolerance:
                return

    async def pause(self, verb: Verb, seconds: float) -> None:
        self._paused_until[verb] = max(self._paused_until[verb], self._clock() + seconds)
