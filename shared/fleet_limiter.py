"""Fleet mode's rate limiter: one schedule per verb in Redis, shared by every worker on every host.

The same spacing rule as :class:`shared.ratelimit.SpacingLimiter`, made atomic across processes by a
Lua script (GCRA with no burst): each caller reserves the verb's next free slot, ``interval`` after
the previous one, and sleeps until it.  Time is Redis's own clock (``TIME``), so hosts with skewed
clocks still share one schedule.  A 429 pushes the verb's schedule past Retry-After for everyone;
callers whose slot falls inside a pause, or who wake too late to use their slot without bunching
with the calls after it (an outage, a busy event loop), reserve a new one.

When Redis cannot be reached the limiter does not guess: see :mod:`shared.redis_hold`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from shared.contracts import Verb
from shared.ratelimit import Sleep, lateness_tolerance
from shared.redis_hold import RedisHold

# KEYS[1] schedule (next free slot, µs)  KEYS[2] pause-until (µs)  ARGV[1] interval (µs)
# Reserves the verb's next slot; returns {wait before it (µs), the slot (µs, Redis time)}.
_RESERVE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local next_free = tonumber(redis.call('GET', KEYS[1]) or 0)
local paused_until = tonumber(redis.call('GET', KEYS[2]) or 0)
local slot = math.max(now, next_free, paused_until)
redis.call('SET', KEYS[1], slot + tonumber(ARGV[1]), 'PX', 60000 + math.ceil((slot - now) / 1000))
return {slot - now, slot}
"""

# KEYS[1] schedule  KEYS[2] pause-until  ARGV[1] pause (µs).
_PAUSE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local until_ = now + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[2]) or 0) then
  redis.call('SET', KEYS[2], until_, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""

# KEYS[1] pause-until  ARGV[1] the caller's slot (µs)  ARGV[2] lateness tolerated (µs).
# Returns 1 when the slot may be used now, 0 when the caller must reserve again: the verb was paused
# meanwhile, or the caller woke so late that sending now would bunch it with the calls after it.
_STILL_VALID = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
if tonumber(redis.call('GET', KEYS[1]) or 0) > now then return 0 end
if now - tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
return 1
"""


class RedisLimiter:
    """One schedule per verb for the whole fleet."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        limit: int,
        margin: float = 0.02,
        hold: RedisHold | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._prefix = prefix
        self._interval_us = round((1 + margin) / limit * 1_000_000)
        self._tolerance_us = round(lateness_tolerance(margin) * 1_000_000)
        self._hold = hold or RedisHold()
        self._sleep = sleep
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._still_valid = redis.register_script(_STILL_VALID)

    def _keys(self, verb: Verb) -> list[str]:
        return [f"{self._prefix}:rate:{verb}", f"{self._prefix}:pause:{verb}"]

    async def acquire(self, verb: Verb) -> None:
        keys = self._keys(verb)
        while True:
            wait_us, slot = await self._run(self._reserve, keys, [self._interval_us])
            await self._sleep(wait_us / 1_000_000)
            if await self._run(self._still_valid, keys[1:], [slot, self._tolerance_us]):
                return

    async def pause(self, verb: Verb, seconds: float) -> None:
        await self._run(self._pause, self._keys(verb), [round(seconds * 1_000_000)])

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int]) -> Any:
        return await self._hold.run(lambda: script(keys=keys, args=args))
