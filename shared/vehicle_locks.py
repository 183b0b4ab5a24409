"""One create or delete at a time per vehicle, across the fleet.

DVSA's create and delete are not idempotent, and the ledger settles what their answers leave in doubt
(:mod:`workers.doubts`): a create retried after a later delete removed its recall is not sent again.
That check and the delete's ledger write must not interleave: a create checked just before the delete
is recorded, and sent just after DVSA applied it, would bring the recall back.  So a worker holds its
vehicle's lock from the check to the ledger write.  In local mode an asyncio lock per VIN does; in
fleet mode a Redis lock per VIN (``SET NX PX``, released only by its owner), whose lease frees it
should its holder die.  Redis outages are waited out, as for the limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Protocol

from redis import asyncio as aioredis

from shared.ratelimit import Sleep
from shared.redis_hold import RedisHold
from shared.settings import Settings

LEASE_S = 30.0  # longer than any one attempt: the limiter's wait, DVSA's timeout, the ledger write
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class VehicleLocks(Protocol):
    def holding(self, vin: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold ``vin``'s lock for the block."""


class LocalVehicleLocks:
    """Per-VIN locks of one process, kept only while someone holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    def __len__(self) -> int:
        """Vehicles whose lock someone holds or waits for."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def holding(self, vin: str) -> AsyncIterator[None]:
        vin = vin.upper()
        lock = self._locks.setdefault(vin, asyncio.Lock())
        self._users[vin] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[vin] -= 1
            if not self._users[vin]:
                del self._users[vin], self._locks[vin]


class RedisVehicleLocks:
    """Per-VIN locks of the fleet; a process's own callers queue locally and ask Redis one at a time."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        lease: float = LEASE_S,
        poll_every: float = 0.02,
        hold: RedisHold | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._lease_ms = int(lease * 1000)
        self._poll_every = poll_every
        self._hold = hold or RedisHold()
        self._sleep = sleep
        self._release = redis.register_script(_RELEASE)
        self._local = LocalVehicleLocks()

    @contextlib.asynccontextmanager
    async def holding(self, vin: str) -> AsyncIterator[None]:
        key, owner = f"{self._prefix}:vehicle:{vin.upper()}", uuid.uuid4().hex
        async with self._local.holding(vin):
            while not await self._hold.run(lambda: self._redis.set(key, owner, nx=True, px=self._lease_ms)):
                await self._sleep(self._poll_every)  # Redis offers no wake-up when a key goes
            try:
                yield
            finally:
                await self._hold.run(lambda: self._release(keys=[key], args=[owner]))


@contextlib.asynccontextmanager
async def vehicle_locks(settings: Settings) -> AsyncIterator[VehicleLocks]:
    """The locks of the settings' mode: the process's own, or the fleet's in Redis."""
    if settings.redis_url is None:
        yield LocalVehicleLocks()
        return
    redis = aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_timeout=2, socket_connect_timeout=2
    )
    try:
        yield RedisVehicleLocks(redis, prefix=settings.prefix)
    finally:
        await redis.aclose()
