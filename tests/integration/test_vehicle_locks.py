"""Vehicle locks on the real Redis: one holder per VIN across processes, freed by its lease if it dies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from shared.vehicle_locks import LocalVehicleLocks, RedisVehicleLocks

pytestmark = pytest.mark.integration

VIN = "WAUZZZ8V000009001"


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


async def test_a_second_process_waits_for_the_first_to_let_go(redis: aioredis.Redis) -> None:
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    first, second = RedisVehicleLocks(redis, prefix=prefix), RedisVehicleLocks(redis, prefix=prefix)
    order: list[str] = []
    async with first.holding(VIN):

        async def later() -> None:
            async with second.holding(VIN.lower()):  # the same vehicle, however it is spelt
                order.append("second")

        waiting = asyncio.create_task(later())
        await asyncio.sleep(0.2)  # long enough for the second to have taken it, had it been free
        order.append("first done")
        assert not waiting.done()
    await asyncio.wait_for(waiting, 5)
    assert order == ["first done", "second"]
    assert await redis.exists(f"{prefix}:vehicle:{VIN}") == 0  # released


async def test_a_dead_holders_lock_is_freed_by_its_lease(redis: aioredis.Redis) -> None:
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    await redis.set(f"{prefix}:vehicle:{VIN}", "a worker since killed", px=300)
    locks = RedisVehicleLocks(redis, prefix=prefix)
    async with asyncio.timeout(5):
        async with locks.holding(VIN):
            assert await redis.get(f"{prefix}:vehicle:{VIN}") != b"a worker since killed"


async def test_local_locks_serialise_one_vehicle_and_forget_it_after() -> None:
    locks = LocalVehicleLocks()
    inside: list[int] = []
    most = 0

    async def use(n: int) -> None:
        nonlocal most
        async with locks.holding(VIN):
            inside.append(n)
            most = max(most, len(inside))
            await asyncio.sleep(0)
            inside.remove(n)

    await asyncio.gather(*(use(n) for n in range(5)), use(99))
    assert most == 1
    async with locks.holding("OTHER0000000000000"), asyncio.timeout(1), locks.holding(VIN):
        pass  # another vehicle's lock does not block this one
    assert len(locks) == 0  # nothing kept once nobody holds or waits
