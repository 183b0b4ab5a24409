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


class SpacingLimiter:
    """Local mode: one schedule per verb for this process."""

    def __init__(
        self,
        limit: int,
        margin: float = 0.015,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval = (1 + margin) / limit
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)

    async def acquire(self, verb: Verb) -> None:
        now = self._clock()
        slot = max(now, self._next_slot[verb])
        # Claim the slot before sleeping, so concurrent callers queue up behind it in order.
        self._next_slot[verb] = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)

    async def pause(self, verb: Verb, seconds: float) -> None:
        self._next_slot[verb] = max(self._next_slot[verb], self._clock() + seconds)
