"""The fleet's shared token after a change of Redis: each process reads the shared token again.

Between changes a process answers from its own copy (no Redis round trip per DVSA call); after a
failover to a replica, or a Redis back from an outage, what Redis holds may differ from that copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from recalls.shared.dvsa.fleet_tokens import RedisTokenCache
from recalls.shared.dvsa.tokens import TokenCache
from recalls.shared.redis_hold import RedisHold
from recalls.shared.settings import Settings
from tests.support.services import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.delete(f"{settings.prefix}:token")
    await client.aclose()


async def share(redis: aioredis.Redis, settings: Settings, value: str) -> None:
    """Put ``value`` in Redis as the fleet's token, valid for an hour."""
    now = time.time()
    payload = {"value": value, "expires_at": now + 3600, "refresh_at": now + 3000}
    await redis.set(f"{settings.prefix}:token", json.dumps(payload), px=3_600_000)


async def test_after_a_change_the_shared_token_is_read_again(
    settings: Settings, redis: aioredis.Redis
) -> None:
    hold = RedisHold()
    fetcher = TokenCache(settings)  # never asked: Redis always holds a valid token here
    try:
        tokens = RedisTokenCache(redis, fetcher, prefix=settings.prefix, hold=hold)
        await share(redis, settings, "token-before")
        assert await tokens.token() == "token-before"
        await share(redis, settings, "token-of-the-new-master")
        assert await tokens.token() == "token-before"  # its own copy, while nothing changed
        hold.changed()
        assert await tokens.token() == "token-of-the-new-master"
    finally:
        await fetcher.aclose()
