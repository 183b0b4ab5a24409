"""Fleet mode's rate limiter: one schedule per verb in Redis, shared by every worker on every host.

The two steps of :mod:`shared.ratelimit` (spacing, then a gate on the calls actually let through),
each made atomic across processes by a Lua script: the spacing is GCRA with no burst (each caller
reserves the verb's next free slot and sleeps until it), the gate a log of the last ``limit`` calls
let through.  Time is Redis's own clock (``TIME``), so hosts with skewed clocks share one schedule.
A 429 pauses the verb for everyone: the gate holds every caller until the pause is over.

When Redis cannot be reached the limiter does not guess: see :mod:`shared.redis_hold`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from shared.contracts import Verb
from shared.ratelimit import Sleep
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

# KEYS[1] schedule  KEYS[2] pause-until  ARGV[1] pause (µs).  Returns 0.
_PAUSE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local until_ = now + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[2]) or 0) then
  redis.call('SET', KEYS[2], until_, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""

# KEYS[1] sent log (newest first, µs)  KEYS[2] pause-until (µs)  ARGV[1] limit  ARGV[2] window (µs)
# Lets the call through (returns 0, recording it as sent), returns the µs to wait for the window,
# or returns -1 when the verb is paused: the caller then reserves a slot after the pause.
_GATE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
if tonumber(redis.call('GET', KEYS[2]) or 0) > now then return -1 end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local oldest = tonumber(redis.call('LINDEX', KEYS[1], limit - 1) or 0)
if now - oldest < window then return oldest + window - now end
redis.call('LPUSH', KEYS[1], now)
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 60000)
return 0
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
        self._limit = limit
        self._interval_us = round((1 + margin) / limit * 1_000_000)
        self._window_us = round((1 + margin) * 1_000_000)
        self._hold = hold or RedisHold()
        self._sleep = sleep
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._gate = redis.register_script(_GATE)

    def _keys(self, verb: Verb) -> list[str]:
        return [f"{self._prefix}:{name}:{verb}" for name in ("rate", "pause", "sent")]

    async def acquire(self, verb: Verb) -> None:
        schedule, paused, sent = self._keys(verb)
        while True:
            wait_us, _ = await self._run(self._reserve, [schedule, paused], [self._interval_us])
            await self._sleep(wait_us / 1_000_000)
            while (
                wait_us := await self._run(self._gate, [sent, paused], [self._limit, self._window_us])
            ) > 0:
                await self._sleep(wait_us / 1_000_000)
            if wait_us == 0:
                return
            # Paused while waiting: queue up again behind the pause, spaced, rather than all at once.

    async def pause(self, verb: Verb, seconds: float) -> None:
        await self._run(self._pause, self._keys(verb)[:2], [round(seconds * 1_000_000)])

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int]) -> Any:
        return await self._hold.run(lambda: script(keys=keys, args=args))
