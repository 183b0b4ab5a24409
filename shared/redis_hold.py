"""Fleet mode's rule for a Redis outage: hold the caller until Redis answers again, never guess.

Guessing a local share of the rate budget or fetching a private token would break the promises that
Redis keeps for the fleet, so a call that cannot reach Redis waits (its message stays unacked, so
nothing is lost) and retries every ``retry_every`` seconds.  The outage is logged once when it starts
and once when it ends, not per caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recalls.shared.ratelimit import Sleep

log = logging.getLogger("recalls.redis")
T = TypeVar("T")
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisHold:
    """Runs Redis operations, waiting out outages."""

    def __init__(self, *, retry_every: float = 0.5, sleep: Sleep = asyncio.sleep) -> None:
        self._retry_every = retry_every
        self._sleep = sleep
        self.in_outage = False

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
                log.warning("Redis reachable again: DVSA calls resume")
            return result
