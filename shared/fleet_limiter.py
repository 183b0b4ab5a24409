"""Fleet mode's rate limiter: one schedule per verb in Redis, shared by every worker on every host.

The same spacing rule as :class:`shared.ratelimit.SpacingLimiter`, made atomic across processes by a
Lua script (GCRA with no burst): each caller reserves the verb's next free slot, ``interval`` after
the previous one, and sleeps until it.  Time is Redis's own clock (``TIME``), so hosts with skewed
clocks still share one schedule.  A 429 pushes the verb's schedule past Retry-After for everyone;
callers whose slot falls inside a pause take a new slot after it.

When Redis cannot be reached the limiter does not guess: see :mod:`shared.redis_hold`.
"""

from __future__ import annotations

import asyncio

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from shared.contracts import Verb
from shared.ratelimit import Sleep
from shared.redis_hold import RedisHold

# KEYS[1] schedule (next free slot, µs)  KEYS[2] pause-until (µs)  ARGV[1] interval (µs)
# Returns the wait in µs before the reserved slot.
_RESERVE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local next_free = tonumber(redis.call('GET', KEYS[1]) or 0)
local paused_until = tonumber(redis.call('GET', KEYS[2]) or 0)
local slot = math.max(now, next_free, paused_until)
redis.call('SET', KEYS[1], slot + tonumber(ARGV[1]), 'PX', 60000 + math.ceil((slot - now) / 1000))
return slot - now
"""

# KEYS[1] schedule  KEYS[2] pause-until  ARGV[1] pause (µs).  Returns nothing.
_PAUSE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local until_ = now + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[2]) or 0) then
  redis.call('SET', KEYS[2], until_, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
"""

# KEYS[1] pause-until.  Returns µs of pause left (0 when not paused).
_PAUSED_FOR = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
return math.max(0, tonumber(redis.call('GET', KEYS[1]) or 0) - now)
"""


class RedisLimiter:
    """One schedule per verb for the whole fleet."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        limit: int,
        margin: float = 0.015,
        hold: RedisHold | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._prefix = prefix
        self._interval_us = round((1 + margin) / limit * 1_000_000)
        self._hold = hold or RedisHold()
        self._sleep = sleep
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._paused_for = redis.register_script(_PAUSED_FOR)

    def _keys(self, verb: Verb) -> list[str]:
        return [f"{self._prefix}:rate:{verb}", f"{self._prefix}:pause:{verb}"]

    async def acquire(self, verb: Verb) -> None:
        keys = self._keys(verb)
        while True:
            wait_us = await self._run(self._reserve, keys, [self._interval_us])
            await self._sleep(wait_us / 1_000_000)
            # A 429 may have paused the verb while this caller slept towards its slot.
            if not await self._run(self._paused_for, keys[1:], []):
                return

    async def pause(self, verb: Verb, seconds: float) -> None:
        await self._run(self._pause, self._keys(verb), [round(seconds * 1_000_000)])

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int]) -> int:
        result = await self._hold.run(lambda: script(keys=keys, args=args))
        return int(result or 0)
