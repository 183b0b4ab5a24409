"""Fleet mode's rule for a Redis outage: hold the caller until Redis answers again, never guess.

Guessing a local share of the rate budget or fetching a private token would break the promises that
Redis keeps for the fleet, so a call that cannot reach Redis waits (its message stays unacked, so
nothing is lost) and retries every ``retry_every`` seconds.  The outage is logged once when it starts
and once when it ends, not per caller.

A Redis that answers again after an outage may not be the one that failed: Sentinel may have promoted
a replica, which copies its master asynchronously and so may lack the last calls the limiter let go,
or a lone Redis may have restarted empty.  Each end of an outage, and each change of master that
Sentinel reports (:meth:`RedisHold.changed`), therefore counts as a *change*: the limiter lets no call
go until one full window after it (:meth:`RedisHold.settled`), by when every call let go before it has
stopped counting at DVSA, and the token cache reads the shared token again (:attr:`RedisHold.changes`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recalls.shared.ratelimit import Clock, Sleep

log = logging.getLogger("recalls.redis")
T = TypeVar("T")
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisHold:
    """Runs Redis operations, waiting out outages."""

    def __init__(
        self, *, retry_every: float = 0.5, sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic
    ) -> None:
        self._retry_every = retry_every
        self._sleep = sleep
        self._clock = clock
        self.in_outage = False
        self.changes = 0  # how many changes (outage ends, new masters) this process has seen
        self._changed_at: float | None = None

    def changed(self) -> None:
        """Redis may have lost recent writes (a new master, or a restart): start a window of caution."""
        self.changes += 1
        self._changed_at = self._clock()

    async def settled(self, window_s: float) -> None:
        """Return once ``window_s`` has passed since the last change (at once if there was none)."""
        while self._changed_at is not None:
            left = self._changed_at + window_s - self._clock()
            if left <= 0:
                return
            await self._sleep(left)  # a change meanwhile moves the end: look again

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                result = await operation()
            except OUTAGE_ERRORS as exc:
                if not self.in_outage:
                    self.in_outage = True
                    log.error("Redis unreachable: DVSA calls held until it is back (%s)", type(exc).__name__)
                await self._sleep(self._retry_every)
                continue
            if self.in_outage:
                self.in_outage = False
                self.changed()
                log.warning("Redis reachable again: DVSA calls resume after one full window")
            return result
