"""The fleet limiter against the real Redis: limiters in different processes share one budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from shared.fleet_limiter import RedisLimiter
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
