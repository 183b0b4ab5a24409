"""Fleet mode's rate limiter: one schedule per verb in Redis, shared by every worker on every host.

The two steps of :mod:`shared.ratelimit` (spacing, then a gate counting calls from when they left),
each made atomic across processes by a Lua script: the spacing is GCRA with no burst (each caller
reserves the verb's next free slot and sleeps until it), the gate a sorted set of the calls let go,
each scored first by its grant and then, once its sender reports it, by when it actually left.
Time is Redis's own clock (``TIME``), so hosts with skewed clocks share one schedule.  A 429 pauses
the verb for everyone: callers waiting at the gate reserve new slots after the pause.

When Redis cannot be reached the limiter does not guess: see :mod:`shared.redis_hold`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from shared.contracts import Verb
from shared.ratelimit import Permit, Sleep
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

# KEYS[1] calls let go (sorted set: ticket -> when it left, µs)  KEYS[2] pause-until (µs)
# KEYS[3] ticket counter  ARGV[1] limit  ARGV[2] window (µs)
# Returns {0, ticket} (let go, counted from now until its sender says when it left),
# {µs to wait, 0} (the window is full) or {-1, 0} (paused: reserve a slot after the pause).
_GATE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
if tonumber(redis.call('GET', KEYS[2]) or 0) > now then return {-1, 0} end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return {math.max(1, tonumber(oldest[2]) + window - now), 0}
end
local ticket = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], now, ticket)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 60000)
redis.call('PEXPIRE', KEYS[3], 86400000)
return {0, ticket}
"""

# KEYS[1] calls let go  ARGV[1] ticket  ARGV[2] µs from its grant to when it left (an upper bound).
_LEFT = """
local granted = redis.call('ZSCORE', KEYS[1], ARGV[1])
if granted then
  redis.call('ZADD', KEYS[1], 'XX', 'GT', tonumber(granted) + tonumber(ARGV[2]), ARGV[1])
end
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
        self._left = redis.register_script(_LEFT)

    def _keys(self, verb: Verb) -> list[str]:
        return [f"{self._prefix}:{name}:{verb}" for name in ("rate", "pause", "sent", "tickets")]

    async def acquire(self, verb: Verb) -> Permit:
        schedule, paused, sent, tickets = self._keys(verb)
        while True:
            wait_us, _ = await self._run(self._reserve, [schedule, paused], [self._interval_us])
            await self._sleep(wait_us / 1_000_000)
            while True:
                # Asked before the grant, so the time it takes to leave is measured from before it.
                permit = Permit(verb, granted_at=0.0)
                wait_us, ticket = await self._run(
                    self._gate, [sent, paused, tickets], [self._limit, self._window_us]
                )
                if wait_us <= 0:
                    break
                await self._sleep(wait_us / 1_000_000)
            if wait_us == 0:
                permit.ticket = str(ticket)
                return permit
            # Paused while waiting: queue up again behind the pause, spaced, rather than all at once.

    async def sent(self, permit: Permit) -> None:
        left_after_us = round(permit.left_after * 1_000_000)
        await self._run(self._left, [self._keys(permit.verb)[2]], [permit.ticket, left_after_us])

    async def pause(self, verb: Verb, seconds: float) -> None:
        await self._run(self._pause, self._keys(verb)[:2], [round(seconds * 1_000_000)])

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int | str]) -> Any:
        return await self._hold.run(lambda: script(keys=keys, args=args))
