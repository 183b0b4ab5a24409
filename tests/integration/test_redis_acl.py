"""The workers' Redis user of deploy/redis/users.acl runs fleet mode on the real Redis, and reaches no more.

The ACL is rendered by deploy/render.sh with a random password, as the Redis container does at start;
its worker line is loaded under a throwaway name, with the key pattern moved to this test's prefix (the
loopback Redis is shared), and removed afterwards.  The default user is left alone here: turning it
off is checked on the file itself (tests/unit/test_compose.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis import asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

from recalls.shared.dvsa.fleet_tokens import RedisTokenCache
from recalls.shared.dvsa.tokens import TokenCache
from recalls.shared.fleet_limiter import RedisLimiter
from recalls.shared.redis_client import redis_client
from recalls.shared.settings import Settings
from tests.support.services import REDIS_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACL = ROOT / "deploy" / "redis" / "users.acl"
RENDER = ROOT / "deploy" / "render.sh"
WORKER_USER = "recalls-worker"
ADMINISTRATION: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("KEYS", "*"),
    ("CONFIG", "GET", "*"),
    ("ACL", "LIST"),
    ("SCRIPT", "FLUSH"),
]


async def rendered_acl(tmp_path: Path, password: str) -> list[str]:
    """The lines of the ACL file the Redis container would read, given the workers' password."""
    output = tmp_path / "users.acl"
    process = await asyncio.create_subprocess_exec(
        "sh", str(RENDER), "redis", str(ACL), str(output),
        env={
            **os.environ,
            "REDIS_WORKER_PASSWORD": password,
            "REDIS_REPLICA_PASSWORD": secrets.token_urlsafe(24),  # the file's other users: not used here
            "REDIS_SENTINEL_PASSWORD": secrets.token_urlsafe(24),
        },
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return output.read_text().splitlines()


def worker_rules(lines: list[str], prefix: str) -> list[str]:
    """The rules of the workers' user, its keys moved from the default prefix to ``prefix``."""
    [line] = [line for line in lines if line.startswith(f"user {WORKER_USER} ")]
    rules = line.split()[2:]
    assert "~recalls:*" in rules
    return [f"~{prefix}:*" if rule == "~recalls:*" else rule for rule in rules]


@pytest.fixture
async def worker_redis(settings: Settings, tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """The workers' own client (:func:`redis_client`), logged in as their user, for ``settings.prefix``."""
    name, password = f"acl-{settings.prefix}", secrets.token_urlsafe(24)
    rules = worker_rules(await rendered_acl(tmp_path, password), settings.prefix)
    admin = aioredis.Redis.from_url(REDIS_URL)
    client = redis_client(
        settings.model_copy(update={"redis_url": SecretStr(f"redis://{name}:{password}@127.0.0.1:6379/0")})
    )
    try:
        await admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
        yield client
    finally:
        await client.aclose()
        await admin.acl_deluser(name)
        keys = [key async for key in admin.scan_iter(match=f"{settings.prefix}:*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


async def test_the_workers_user_runs_the_rate_limiter_and_the_shared_token(
    settings: Settings, worker_redis: aioredis.Redis
) -> None:
    assert await worker_redis.ping()
    limiter = RedisLimiter(worker_redis, prefix=settings.prefix, limit=5, margin=0.002)
    for lane in ("live", "bulk", "background"):
        permit = await limiter.acquire("create", lane)
        await limiter.answered(permit)
    await limiter.pause("get", 0.01)

    fetcher = TokenCache(settings)
    try:
        tokens = RedisTokenCache(worker_redis, fetcher, prefix=settings.prefix)
        first = await tokens.token()
        # A rejected token forces the renewal under the fleet's lock, which a script releases.
        assert await tokens.refresh(rejected=first) != first
    finally:
        await fetcher.aclose()


async def test_the_workers_user_reaches_no_other_key_and_no_administration(
    settings: Settings, worker_redis: aioredis.Redis
) -> None:
    await worker_redis.set(f"{settings.prefix}:mine", "1")
    with pytest.raises(NoPermissionError):
        await worker_redis.set("someone-else:key", "1")
    with pytest.raises(NoPermissionError):
        await worker_redis.get("someone-else:key")
    outside = worker_redis.register_script("return redis.call('GET', KEYS[1])")
    with pytest.raises(ResponseError, match="permission"):  # a script may not reach past the ACL either
        await outside(keys=["someone-else:key"])
    for command in ADMINISTRATION:
        with pytest.raises(NoPermissionError):
            await worker_redis.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py: untyped
