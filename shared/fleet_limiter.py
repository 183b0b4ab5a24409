"""Fleet mode's rate limiter: one schedule per verb in Redis, shared by every worker on every host.

The two steps of :mod:`recalls.shared.ratelimit` (spacing, then a gate), each made atomic across processes by
a Lua script: the spacing is GCRA with no burst (each caller reserves the verb's next free slot and
sleeps until it), the gate a sorted set of the calls let go, each scored by when it stops counting:
far ahead while it is in flight, then its answer plus one window once its sender reports the answer.
Time is Redis's own clock (``TIME``), so hosts with skewed clocks share one schedule.  A 429 pauses
the verb for everyone: callers waiting at the gate reserve new slots after the pause.  The lanes share
each schedule as in local mode: a live caller reserves at once (up to
:data:`recalls.shared.ratelimit.LIVE_BOOKINGS` unused per verb and process), a bulk or background caller only
once the schedule is booked no further ahead than its lane's :data:`recalls.shared.ratelimit.BOOKING_HORIZON`
(checked in the same script as the reservation), so live work goes first, then bulk, then background,
fleet-wide.

When Redis cannot be reached the limiter does not guess: see :mod:`recalls.shared.redis_hold`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from recalls.shared.contracts import VERBS, Lane, Verb
from recalls.shared.ratelimit import BOOKING_HORIZON, LIVE_BOOKINGS, Permit, Ready, Sleep
from recalls.shared.redis_hold import RedisHold

# KEYS[1] schedule (next free slot, µs)  KEYS[2] pause-until (µs)  KEYS[3] call time (hash, µs)
# ARGV[1] limit  ARGV[2] window (µs)  ARGV[3] (bulk and background lanes only) the lane's booking
# horizon, in intervals.  Reserves the verb's next slot, spaced so that a window plus the slack of a
# call's time from grant to answer holds the limit (see recalls.shared.ratelimit); returns {wait before it
# (µs), 1}.  With a horizon, it reserves only a slot at most that far ahead: otherwise it returns
# {wait until the schedule is booked no further ahead than the horizon (µs, at least 1), 0}.
_RESERVE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local window = tonumber(ARGV[2])
local took = redis.call('HMGET', KEYS[3], 'mean', 'spread')
local slack = math.min(tonumber(took[1] or 0) + 2 * tonumber(took[2] or 0), window)
local next_free = tonumber(redis.call('GET', KEYS[1]) or 0)
local paused_until = tonumber(redis.call('GET', KEYS[2]) or 0)
local slot = math.max(now, next_free, paused_until)
local interval = math.floor((window + slack) / tonumber(ARGV[1]))
if ARGV[3] then
  local horizon = now + math.floor(interval * tonumber(ARGV[3]))
  if slot > horizon then return {slot - horizon, 0} end
end
redis.call('SET', KEYS[1], slot + interval, 'PX', 60000 + math.ceil((slot - now) / 1000))
return {slot - now, 1}
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

# KEYS[1] calls let go (sorted set: ticket -> when it stops counting, µs)  KEYS[2] pause-until (µs)
# KEYS[3] ticket counter  ARGV[1] limit  ARGV[2] window (µs)  ARGV[3] in-flight lease (µs)
# Returns {0, ticket} (let go, counting until its answer is reported or the lease runs out),
# {µs to wait, 0} (the window is full) or {-1, 0} (paused: reserve a slot after the pause).
_GATE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
if tonumber(redis.call('GET', KEYS[2]) or 0) > now then return {-1, 0} end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  -- A call still in flight stops counting a window after its answer at the soonest.
  local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return {math.max(1, math.min(tonumber(oldest[2]), now + window) - now), 0}
end
local ticket = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ticket)
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) / 1000) + 60000)
redis.call('PEXPIRE', KEYS[3], 86400000)
return {0, ticket}
"""

# KEYS[1] calls let go  KEYS[2] call time (hash: mean, spread, µs)  ARGV[1] ticket  ARGV[2] window
# ARGV[3] in-flight lease (µs).  Now is after the call's answer came, so after it reached DVSA: it
# stops counting a window from now.  Its time from grant to answer joins the running averages (as
# recalls.shared.ratelimit.CallTime keeps them).
_ANSWERED = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local took = now - (tonumber(score) - tonumber(ARGV[3]))
local avg = redis.call('HMGET', KEYS[2], 'mean', 'spread')
local mean = tonumber(avg[1] or took)
local spread = tonumber(avg[2] or 0)
spread = spread + (math.abs(took - mean) - spread) / 16
mean = mean + (took - mean) / 16
redis.call('HSET', KEYS[2], 'mean', math.floor(mean), 'spread', math.floor(spread))
redis.call('PEXPIRE', KEYS[2], 3600000)
return 0
"""

# A worker that dies mid-call never reports its answer: its place is freed after this long.
_IN_FLIGHT_LEASE_US = 60_000_000


class RedisLimiter:
    """One schedule per verb for the whole fleet."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        limit: int,
        margin: float,
        hold: RedisHold | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._prefix = prefix
        self._limit = limit
        self._window_us = round((1 + margin) * 1_000_000)
        self._hold = hold or RedisHold()
        self._sleep = sleep
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._gate = redis.register_script(_GATE)
        self._answered = redis.register_script(_ANSWERED)
        self._turn = {(lane, verb): asyncio.Lock() for lane in BOOKING_HORIZON for verb in VERBS}
        self._live = {verb: asyncio.Semaphore(LIVE_BOOKINGS) for verb in VERBS}

    def _keys(self, verb: Verb) -> list[str]:
        return [f"{self._prefix}:{name}:{verb}" for name in ("rate", "pause", "counted", "tickets", "took")]

    async def acquire(self, verb: Verb, lane: Lane = "live", ready: Ready | None = None) -> Permit:
        if lane not in BOOKING_HORIZON:
            async with self._live[verb]:
                return await self._go(verb, await self._book(verb), ready)
        # One caller per lane and verb in this process books at a time: the others would only ask in vain.
        async with self._turn[lane, verb]:
            wait_us = await self._book(verb, BOOKING_HORIZON[lane])
        return await self._go(verb, wait_us, ready)

    async def _book(self, verb: Verb, horizon: float | None = None) -> int:
        """Book the verb's next slot (given a horizon, once it is that near); µs until it comes."""
        schedule, paused, _, _, took = self._keys(verb)
        args: list[int | str] = [self._limit, self._window_us]
        if horizon is not None:
            args.append(repr(horizon))
        while True:
            wait_us, booked = await self._run(self._reserve, [schedule, paused, took], args)
            if booked:
                return int(wait_us)
            await self._sleep(wait_us / 1_000_000)

    async def _go(self, verb: Verb, wait_us: int, ready: Ready | None) -> Permit:
        """Wait for the booked slot, do ``ready``'s work (the first time), then wait for the gate."""
        _, paused, counted, tickets, _ = self._keys(verb)
        while True:
            await self._sleep(wait_us / 1_000_000)
            if ready is not None:
                await ready()
                ready = None
            while True:
                wait_us, ticket = await self._run(
                    self._gate,
                    [counted, paused, tickets],
                    [self._limit, self._window_us, _IN_FLIGHT_LEASE_US],
                )
                if wait_us <= 0:
                    break
                await self._sleep(wait_us / 1_000_000)
            if wait_us == 0:
                # After a change of Redis (see redis_hold) the gate may have forgotten calls still
                # counting at DVSA: the slot is kept, the call waits until they have all stopped.
                await self._hold.settled(self._window_us / 1_000_000)
                return Permit(verb, ticket=str(ticket))
            # Paused while waiting: queue up again behind the pause, spaced, rather than all at once.
            wait_us = await self._book(verb)

    async def answered(self, permit: Permit) -> None:
        keys = self._keys(permit.verb)
        await self._run(
            self._answered,
            [keys[2], keys[4]],
            [permit.ticket, self._window_us, _IN_FLIGHT_LEASE_US],
        )

    async def pause(self, verb: Verb, seconds: float) -> None:
        await self._run(self._pause, self._keys(verb)[:2], [round(seconds * 1_000_000)])

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int | str]) -> Any:
        return await self._hold.run(lambda: script(keys=keys, args=args))
