"""Fleet mode's OAuth token: one for all workers, kept in Redis, refreshed by one lock holder.

Each process keeps the shared token in memory until its refresh time, so a DVSA call costs no Redis
round trip.  When the token is due, one process takes a Redis lock and fetches a new one from the
token endpoint (through :class:`recalls.shared.dvsa.tokens.TokenCache`'s fetch), while the others go on using
the old token, which is still valid, or wait for the new one if it has already expired.  A 401 forces
a refresh only if the shared token is still the one DVSA rejected.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from redis import asyncio as aioredis

from recalls.shared.dvsa.tokens import Token, TokenCache, TokenUnavailable, note_token
from recalls.shared.metrics import WorkerMetrics
from recalls.shared.ratelimit import Clock
from recalls.shared.redis_hold import RedisHold

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenCache:
    """The fleet's one token."""

    def __init__(
        self,
        redis: aioredis.Redis,
        fetcher: TokenCache,
        *,
        prefix: str,
        clock: Clock = time.time,
        lock_seconds: float = 30.0,
        poll_every: float = 0.05,
        hold: RedisHold | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._hold = hold or RedisHold()
        self._redis = redis
        self._fetcher = fetcher
        self._key = f"{prefix}:token"
        self._lock_key = f"{prefix}:token:lock"
        self._clock = clock
        self._lock_ms = int(lock_seconds * 1000)
        self._poll_every = poll_every
        self._release = redis.register_script(_RELEASE)
        self._local: Token | None = None
        self._metrics = metrics
        self._in_process = asyncio.Lock()
        self._seen_changes = self._hold.changes

    async def token(self) -> str:
        if self._seen_changes != self._hold.changes:  # Redis changed: check the shared token again
            self._seen_changes = self._hold.changes
            self._local = None
        local = self._local
        if local is not None and self._clock() < local.refresh_at:
            return local.value
        return (await self._current(rejected=None)).value

    async def refresh(self, rejected: str) -> str:
        return (await self._current(rejected=rejected)).value

    async def _current(self, rejected: str | None) -> Token:
        # One coroutine per process at a time; the others then find the renewed token at once.
        async with self._in_process:
            return await self._shared(rejected)

    async def _shared(self, rejected: str | None) -> Token:
        deadline = self._clock() + self._lock_ms / 1000
        while True:
            shared = await self._read()
            if shared is not None and shared.value == rejected:
                shared = None
            if shared is not None and self._clock() < shared.refresh_at:
                return self._adopt(shared)
            owner = await self._lock()
            if owner is not None:
                try:
                    return await self._renew(rejected)
                finally:
                    await self._unlock(owner)
            if shared is not None and self._clock() < shared.expires_at:
                return shared  # due for renewal but still valid: the lock holder is renewing it
            if self._clock() > deadline:
                raise TokenUnavailable("no shared token: the process renewing it has not finished")
            await asyncio.sleep(self._poll_every)  # Redis offers no wake-up on a key change

    async def _renew(self, rejected: str | None) -> Token:
        shared = await self._read()  # another holder may have renewed it just before we locked
        if shared is not None and shared.value != rejected and self._clock() < shared.refresh_at:
            return self._adopt(shared)
        fresh = await self._fetcher.fetch()
        ttl_ms = max(1, int((fresh.expires_at - self._clock()) * 1000))
        payload = {"value": fresh.value, "expires_at": fresh.expires_at, "refresh_at": fresh.refresh_at}
        await self._hold.run(lambda: self._redis.set(self._key, json.dumps(payload), px=ttl_ms))
        return self._adopt(fresh)

    def _adopt(self, token: Token) -> Token:
        self._local = token
        note_token(self._metrics, token)
        return token

    async def _lock(self) -> str | None:
        """Take the fleet's renewal lock; return the owner mark that releases it, or None."""
        owner = uuid.uuid4().hex
        taken = await self._hold.run(
            lambda: self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ms)
        )
        return owner if taken else None

    async def _unlock(self, owner: str) -> None:
        await self._hold.run(lambda: self._release(keys=[self._lock_key], args=[owner]))

    async def _read(self) -> Token | None:
        raw = await self._hold.run(lambda: self._redis.get(self._key))
        if raw is None:
            return None
        data = json.loads(raw)
        return Token(str(data["value"]), float(data["expires_at"]), float(data["refresh_at"]))
