"""How often the fleet may call DVSA: never more than the limit of one verb in any one-second window.

DVSA counts requests at arrival.  A bucket of capacity N refilled each second admits up to 2N in a
second, and fixed windows admit 2N across an edge, so each verb is limited in two steps:

1. *Gate*: a call is let through only if fewer than ``limit`` calls are in flight or were answered
   in the last ``1 + margin`` seconds (the window).
2. *Spacing*: callers reserve slots ``(window + slack) / limit`` seconds apart and sleep until
   theirs, so calls flow evenly instead of in bursts, where the slack is the calls' usual time from
   grant to answer (mean plus twice the mean deviation, measured as they go).  Spaced like that, a
   call usually finds the gate open when it wakes; spaced tighter, waiters would pile up at the gate.

Why count a call until one window after its *answer*: a request arrives at DVSA after it was let
through and before its answer comes back, however late the sender wrote it or the network carried
it.  So if call *k + limit* is let through a window after call *k* was answered, it arrives more than
a window after call *k* did, on any machine under any load, with no allowance for jitter.  The price
is one call's latency per window (a few milliseconds in a second).  The margin only covers how DVSA
rounds its window.

Live work goes first, then bulk work, then background work.  A live caller books the verb's next slot
at once, but each process holds at most :data:`LIVE_BOOKINGS` unused live slots per verb: a slot's
spacing is fixed when it is booked, from the call time measured then, so booking no further ahead keeps
a spell of slow calls (a fleet starting up on shared cores) from spacing the seconds after it, as
every prefetched command booking at once would.  A caller of another lane books
only once the verb's schedule is booked no further ahead than its lane's :data:`BOOKING_HORIZON` (one
caller per lane, verb and process asks at a time):

- bulk, one interval: bulk work takes every slot live work leaves, since the next bulk booking is
  made while the last one waits for its slot, so a late wake-up of the bulk side loses no slot;
- background, half an interval: while bulk work waits, each bulk booking comes before the schedule is
  that close, so background work gets a slot only after a bulk wake-up more than half an interval
  late; alone it books half an interval ahead, so a wake-up up to that late loses it no slot.

Each such booking is made at most one interval ahead, and the next one only after its slot has come,
so a live caller finds at most one bulk or background call booked ahead of it (and the calls that a
429's pause sent back from the gate, which book again behind the pause in turn, whatever their lane).

A caller may hand :meth:`RateLimiter.acquire` work to do once its slot has come, just before the gate
(``ready``: a command's last look at the ledger).  Done there, it is not part of the call's time from
grant to answer, so it neither widens the spacing nor holds a place at the gate.

Anything that limits calls implements :class:`RateLimiter`, so local mode (this module) and fleet mode
(:mod:`recalls.shared.fleet_limiter`, the same in Redis) are interchangeable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from recalls.shared.contracts import VERBS, Lane, Verb

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Ready = Callable[[], Awaitable[None]]  # done once the slot has come, before the gate (may raise)

# How far ahead, in intervals, a verb's schedule may be booked for a caller of the lane to book a slot;
# a live caller books at once.
BOOKING_HORIZON: dict[Lane, float] = {"bulk": 1.0, "background": 0.5}
# Live slots of a verb a process may hold booked and not yet used: enough that its next call is booked
# while the last waits, so one process alone keeps every slot.
LIVE_BOOKINGS = 4


@dataclass(eq=False)
class Permit:
    """Leave for one call, counted until :meth:`RateLimiter.answered` is told its answer came."""

    verb: Verb
    ticket: str = ""  # the fleet's name for this call (fleet mode)
    granted_at: float = 0.0  # the limiter's clock (local mode)
    answered_at: float | None = None  # the limiter's clock (local mode); None: still in flight


@dataclass
class CallTime:
    """Running mean and mean deviation of calls' time from grant to answer, each new call weighing 1/16."""

    mean: float | None = None
    spread: float = 0.0

    def add(self, took: float) -> None:
        mean = took if self.mean is None else self.mean
        self.spread += (abs(took - mean) - self.spread) / 16
        self.mean = mean + (took - mean) / 16

    def slack(self, most: float) -> float:
        """How much longer than a window the calls of one window usually take, at most ``most``."""
        return min((self.mean or 0.0) + 2 * self.spread, most)


class RateLimiter(Protocol):
    async def acquire(self, verb: Verb, lane: Lane = "live", ready: Ready | None = None) -> Permit:
        """Return when a call of ``verb`` may be sent now; other lanes only with slots the lanes before
        them in :data:`recalls.shared.topology.LANES` leave.  ``ready`` is awaited once, when the call's slot
        has come and before the gate; what it raises, ``acquire`` raises, and the slot goes unused."""

    async def answered(self, permit: Permit) -> None:
        """The call is over (answered, failed or given up): count it for one window from now."""

    async def pause(self, verb: Verb, seconds: float) -> None:
        """Send no call of ``verb`` for ``seconds`` (DVSA said 429 with Retry-After)."""


class SpacingLimiter:
    """Local mode: one schedule and one gate per verb for this process."""

    def __init__(
        self,
        limit: int,
        margin: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.window = 1 + margin
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)
        self._paused_until: dict[Verb, float] = dict.fromkeys(VERBS, 0.0)
        self._let_go: dict[Verb, list[Permit]] = {verb: [] for verb in VERBS}
        self._call_time: dict[Verb, CallTime] = {verb: CallTime() for verb in VERBS}
        self._turn: dict[tuple[Lane, Verb], asyncio.Lock] = {
            (lane, verb): asyncio.Lock() for lane in BOOKING_HORIZON for verb in VERBS
        }
        self._live = {verb: asyncio.Semaphore(LIVE_BOOKINGS) for verb in VERBS}

    async def acquire(self, verb: Verb, lane: Lane = "live", ready: Ready | None = None) -> Permit:
        if lane not in BOOKING_HORIZON:
            async with self._live[verb]:
                return await self._go(verb, self._book(verb), ready)
        horizon = BOOKING_HORIZON[lane]
        async with self._turn[lane, verb]:
            # Rounding can leave a wait too small to move the clock: a microsecond is near enough.
            while (wait := self._booked_ahead(verb) - horizon * self.interval(verb)) > 1e-6:
                await self._sleep(wait)
            slot = self._book(verb)
        return await self._go(verb, slot, ready)

    def _book(self, verb: Verb) -> float:
        """Claim the verb's next slot at once, so callers queue up behind it in order."""
        slot = max(self._clock(), self._next_slot[verb], self._paused_until[verb])
        self._next_slot[verb] = slot + self.interval(verb)
        return slot

    def _booked_ahead(self, verb: Verb) -> float:
        return max(self._next_slot[verb], self._paused_until[verb]) - self._clock()

    async def _go(self, verb: Verb, slot: float, ready: Ready | None) -> Permit:
        while True:
            if (wait := slot - self._clock()) > 0:
                await self._sleep(wait)
            if ready is not None:
                await ready()
                ready = None
            while (wait := self._gate(verb)) > 0:
                await self._sleep(wait)
            if wait == 0:
                return self._let_go[verb][-1]
            # Paused while waiting: queue up again behind the pause, spaced, rather than all at once.
            slot = self._book(verb)

    def _gate(self, verb: Verb) -> float:
        """Let the call through (0), say how long until the window allows it, or -1 when paused."""
        now = self._clock()
        if now < self._paused_until[verb]:
            return -1.0
        recent = [p for p in self._let_go[verb] if self._counted_until(p) > now]
        self._let_go[verb] = recent
        if len(recent) >= self.limit:
            # A call still in flight frees its place a window after its answer, which is not yet.
            ends = sorted(min(self._counted_until(p), now + self.window) for p in recent)
            # Never 0: rounding must not turn a refusal into a pass.
            return max(ends[len(ends) - self.limit] - now, 1e-6)
        recent.append(Permit(verb, granted_at=now))
        return 0.0

    def interval(self, verb: Verb) -> float:
        return (self.window + self._call_time[verb].slack(self.window)) / self.limit

    async def answered(self, permit: Permit) -> None:
        permit.answered_at = self._clock()
        self._call_time[permit.verb].add(permit.answered_at - permit.granted_at)

    async def pause(self, verb: Verb, seconds: float) -> None:
        self._paused_until[verb] = max(self._paused_until[verb], self._clock() + seconds)

    def _counted_until(self, permit: Permit) -> float:
        if permit.answered_at is None:
            return float("inf")
        return permit.answered_at + self.window
