"""The fleet's Redis client keeps to a few connections however many callers burst at once."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr
from redis import asyncio as aioredis

from recalls.shared.redis_client import REDIS_CONNECTIONS, redis_client
from recalls.shared.settings import Settings
from tests.support.services import REDIS_URL

pytestmark = pytest.mark.integration


async def connections_named(name: str) -> int:
    """How many connections Redis itself lists under the client name ``name``."""
    async with aioredis.Redis.from_url(REDIS_URL) as observer:
        clients = await observer.client_list()
    return sum(1 for client in clients if client.get("name") == name)


async def test_a_burst_of_callers_shares_the_capped_pool(settings: Settings) -> None:
    prefix = settings.prefix
    client = redis_client(settings.model_copy(update={"redis_url": SecretStr(REDIS_URL)}))
    try:
        key = f"{prefix}:burst"
        results = await asyncio.gather(*(client.incr(key) for _ in range(200)))
        assert sorted(results) == list(range(1, 201))  # every caller was served, none refused
        assert 1 <= await connections_named(f"{prefix}-fleet") <= REDIS_CONNECTIONS
        await client.delete(key)
    finally:
        await client.aclose()
    assert await connections_named(f"{prefix}-fleet") == 0  # closing the client closes its pool
