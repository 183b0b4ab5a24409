"""How often the fleet may call DVSA: never more than the limit of one verb in any one-second window.

DVSA counts requests at arrival.  A bucket of capacity N refilled each second admits up to 2N in a
second, and fixed windows admit 2N across an edge, so each verb is limited in two steps:

1. *Spacing*: callers reserve slots ``(1 + margin) / limit`` seconds apart and sleep until theirs, so
   calls flow evenly instead of in bursts.
2. *Gate*: when a caller wakes, its call is let through only if fewer than ``limit`` calls left in
   the last ``1 + margin`` seconds.  Each call is counted from the moment it actually leaves (the
   caller reports it through its :class:`Permit`), so a caller that woke or sent late (a busy loop, a
   stalled process) makes the calls after it wait, instead of bunching with them, and loses no slot.
   The margin is left for the jitter between leaving here and arriving at DVSA.

Anything that limits calls implements :class:`RateLimiter`, so local mode (this module) and fleet mode
(:mod:`shared.fleet_limiter`, the same two steps in Redis) are interchangeable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from shared.contracts import VERBS, Verb

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(eq=False)
class Permit:
    """Leave for one call.  The caller says when the request really leaves: :meth:`leaving`."""

    verb: Verb
    granted_at: float  # the limiter's clock when it let the call go (local mode)
    ticket: str = ""  # the fleet's name for this call (fleet mode)
    asked_at: float = field(default_factory=time.perf_counter)
    left_after: float = 0.0  # seconds from asking for leave to writing the request

    def leaving(self) -> None:
        """Call right before the request is written."""
        self.left_after = time.perf_counter() - self.asked_at


class RateLimiter(Protocol):
    async def acquire(self, verb: Verb) -> Permit:
        """Return when a call of ``verb`` may be sent now."""

    async def sent(self, permit: Permit) -> None:
        """Count the call from when it left (after :meth:`Permit.leaving`), not from its grant."""

    async def pause(self, verb: Verb, seconds: float) -> None:
        """Send no call of ``verb`` for ``seconds`` (DVSA said 429 with Retry-After)."""


class SpacingLimiter:
    """Local mode: one schedule and one gate per verb for this process."""

    def __init__(
        self,
        limit: int,
        margin: float = 0.015,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.interval = (1 + margin) / limit
        self.window = 1 + margin
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)
        self._paused_until: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)
        self._let_go: dict[Verb, list[Permit]] = {verb: [] for verb in VERBS}

    async def acquire(self, verb: Verb) -> Permit:
        while True:
            now = self._clock()
            slot = max(now, self._next_slot[verb], self._paused_until[verb])
            # Claim the slot before sleeping, so concurrent callers queue up behind it in order.
            self._next_slot[verb] = slot + self.interval
            if slot > now:
                await self._sleep(slot - now)
            while (wait := self._gate(verb)) > 0:
                await self._sleep(wait)
            if wait == 0:
                return self._let_go[verb][-1]
            # Paused while waiting: queue up again behind the pause, spaced, rather than all at once.

    def _gate(self, verb: Verb) -> float:
        """Let the call through (0), say how long until the window allows it, or -1 when paused."""
        now = self._clock()
        if now < self._paused_until[verb]:
            return -1.0
        recent = [p for p in self._let_go[verb] if _left(p) > now - self.window]
        self._let_go[verb] = recent
        if len(recent) >= self.limit:
            times = sorted(_left(p) for p in recent)
            # Never 0: rounding must not turn a refusal into a pass.
            return max(times[len(times) - self.limit] + self.window - now, 1e-6)
        recent.append(Permit(verb, granted_at=now))
        return 0.0

    async def sent(self, permit: Permit) -> None:
        """Nothing to do: the permit itself carries the time it left."""

    async def pause(self, verb: Verb, seconds: float) -> None:
        self._paused_until[verb] = max(self._paused_until[verb], self._clock() + seconds)


def _left(permit: Permit) -> float:
    return permit.granted_at + permit.left_after
