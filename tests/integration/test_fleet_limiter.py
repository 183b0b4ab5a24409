"""The fleet limiter against the real Redis: limiters in different processes share one budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from recalls.shared.contracts import Lane
from recalls.shared.fleet_limiter import RedisLimiter
from recalls.shared.redis_hold import RedisHold
from tests.support.services import REDIS_URL
from tests.support.windows import max_in_any_window

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def limiters(redis: aioredis.Redis, count: int, limit: int) -> list[RedisLimiter]:
    """``count`` limiters on one schedule, as in ``count`` worker processes."""
    prefix = f"it-limiter-{uuid.uuid4().hex[:8]}"
    return [RedisLimiter(redis, prefix=prefix, limit=limit, margin=0.002) for _ in range(count)]


async def test_limiters_of_several_processes_share_one_budget(redis: aioredis.Redis) -> None:
    fleet = limiters(redis, 3, limit=5)
    granted: list[float] = []

    async def caller(limiter: RedisLimiter) -> None:
        for _ in range(5):
            permit = await limiter.acquire("create")
            granted.append(time.monotonic())
            await limiter.answered(permit)

    await asyncio.gather(*(caller(limiter) for limiter in fleet))
    assert len(granted) == 15
    assert max_in_any_window(granted) <= 5


async def test_a_call_in_flight_holds_its_place_until_answered(redis: aioredis.Redis) -> None:
    first, second = limiters(redis, 2, limit=3)
    in_flight = [await first.acquire("fix") for _ in range(3)]
    next_call = asyncio.create_task(second.acquire("fix"))
    # Counted from their grants, the three would free the window after one second.
    done, _ = await asyncio.wait({next_call}, timeout=1.5)
    assert not done
    for permit in in_flight:
        await first.answered(permit)
    answered = time.monotonic()
    await next_call
    assert time.monotonic() - answered > 0.9  # a window after the answers, not after the grants


class Lanes:
    """Callers of several lanes on one Redis schedule of 5/s: half an interval is 100 ms, far more than
    any wake-up here is late.  Notes which lane each grant went to, in order."""

    def __init__(self, redis: aioredis.Redis, processes: int) -> None:
        self.fleet = limiters(redis, processes, limit=5)
        self.granted: list[tuple[Lane, float]] = []
        self.changed = asyncio.Event()

    async def calls(self, limiter: RedisLimiter, lane: Lane, count: int) -> None:
        for _ in range(count):
            permit = await limiter.acquire("get", lane)
            self.granted.append((lane, time.monotonic()))
            self.changed.set()
            await limiter.answered(permit)

    async def until_granted(self, lane: Lane, count: int) -> None:
        while sum(1 for granted, _ in self.granted if granted == lane) < count:
            self.changed.clear()
            await self.changed.wait()

    def lanes(self) -> list[Lane]:
        return [lane for lane, _ in self.granted]


async def test_background_calls_wait_while_bulk_work_waits(redis: aioredis.Redis) -> None:
    lanes = Lanes(redis, 4)  # two processes with bulk work, two with background work
    bulk, background = lanes.fleet[:2], lanes.fleet[2:]

    async def background_caller(limiter: RedisLimiter) -> None:
        await lanes.until_granted("bulk", 1)  # bulk work waits from the first slot on
        await lanes.calls(limiter, "background", 3)

    await asyncio.gather(
        *(lanes.calls(limiter, "bulk", 5) for limiter in bulk),
        *(background_caller(limiter) for limiter in background),
    )
    assert lanes.lanes() == ["bulk"] * 10 + ["background"] * 6
    assert max_in_any_window([at for _, at in lanes.granted]) <= 5


async def test_a_live_call_goes_ahead_of_background_work(redis: aioredis.Redis) -> None:
    lanes = Lanes(redis, 3)  # two processes with background work, one with a live call
    background = [asyncio.create_task(lanes.calls(limiter, "background", 100)) for limiter in lanes.fleet[:2]]
    await lanes.until_granted("background", 3)  # in full flow
    asked = len(lanes.granted)
    await lanes.calls(lanes.fleet[2], "live", 1)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    # Behind at most the background call at its slot when it asked and the one booked after it.
    assert lanes.lanes()[asked:].index("live") <= 2


async def test_after_a_change_of_redis_that_lost_the_budget_no_call_goes_for_a_window(
    redis: aioredis.Redis,
) -> None:
    hold = RedisHold()
    prefix = f"it-limiter-{uuid.uuid4().hex[:8]}"
    limiter = RedisLimiter(redis, prefix=prefix, limit=3, margin=0.002, hold=hold)
    granted: list[float] = []
    for _ in range(3):
        await limiter.answered(await limiter.acquire("get"))
        granted.append(time.monotonic())
    # A failover to a replica that never received these writes: the budget is gone from Redis...
    await redis.delete(*[key async for key in redis.scan_iter(match=f"{prefix}:*")])
    hold.changed()  # ...and the client's pool reports the new master
    for _ in range(3):
        await limiter.answered(await limiter.acquire("get"))
        granted.append(time.monotonic())
    assert max_in_any_window(granted) <= 3
