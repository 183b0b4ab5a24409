"""Fleet mode's Redis client, built from the settings in one place for every part of the worker.

``RECALLS_REDIS_URL`` names one Redis (``redis://``, ``rediss://`` for TLS with its ``ssl_*`` options, the
ACL user and password in the URL), or a Redis watched by Sentinel::

    redis+sentinel://[user:password@]sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/SERVICE[/DB]
        [?sentinel_username=...&sentinel_password=...]

where the user and password are the Redis master's (the workers' ACL user), ``SERVICE`` is the name the
Sentinels monitor, and ``sentinel_*`` log in to the Sentinels themselves if they require it.  The client
asks the Sentinels for the master before each new connection and follows a failover; a master that
changes is reported to ``on_master_change`` (:meth:`recalls.shared.redis_hold.RedisHold.changed`).
It believes a master only when most of the Sentinels name it: one that has not yet heard of a
failover would otherwise send some workers to the old master, restarted empty, and two budgets would
run at once (the fault suite's ``redis_failover`` scenario saw 29 calls of a verb in a second so).

Every socket operation, connecting included, gives up after :data:`REDIS_TIMEOUT_S`: a Redis that does
not answer is an outage (:mod:`recalls.shared.redis_hold` waits it out) or a failed readiness probe, never
a caller stuck on a dead connection.  A single Redis's pool holds at most :data:`REDIS_CONNECTIONS`:
every command the fleet sends Redis is one short script or key operation, so a few connections carry a
worker's whole load, and a burst waits for one of them instead of opening sockets the worker then keeps
for the rest of its life.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recalls.shared.redis_urls import SENTINEL_SCHEME, SentinelUrl
from recalls.shared.settings import Settings

REDIS_TIMEOUT_S = 2
REDIS_CONNECTIONS = 4


def redis_client(settings: Settings, on_master_change: Callable[[], None] | None = None) -> aioredis.Redis:
    """A client of the settings' Redis; it connects on its first command.  Only in fleet mode."""
    if settings.redis_url is None:
        raise ValueError("RECALLS_REDIS_URL is not set: local mode has no Redis")
    url = settings.redis_url.get_secret_value()
    timeouts: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
    name = f"{settings.prefix}-fleet"  # names the fleet's connections in CLIENT LIST
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        return _sentinel_client(SentinelUrl.parse(url), name, timeouts, on_master_change)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_TIMEOUT_S, client_name=name, **timeouts
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # the client closes the pool with itself
    return client


class MajoritySentinel(Sentinel):
    """redis-py's Sentinel client, asking every Sentinel and believing only a master most of them name."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        answers = await asyncio.gather(*(self._named(sentinel, service_name) for sentinel in self.sentinels))
        named = Counter(answer for answer in answers if answer is not None)
        if named:
            address, votes = named.most_common(1)[0]
            if votes > len(self.sentinels) // 2:
                return address
        raise MasterNotFoundError(
            f"no master of {service_name!r} named by most of the {len(self.sentinels)} Sentinels"
        )

    async def _named(self, sentinel: aioredis.Redis, service_name: str) -> tuple[str, int] | None:
        try:
            masters = await sentinel.sentinel_masters()  # type: ignore[no-untyped-call]  # redis-py: untyped
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return None
        state = masters.get(service_name)
        if state and self.check_master_state(state, service_name):
            return str(state["ip"]), int(state["port"])
        return None


class _WatchedMasterPool(SentinelConnectionPool):
    """Sentinel's pool, telling ``on_master_change`` when the master it connects to is another one."""

    def __init__(self, *args: Any, on_master_change: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # redis-py: untyped
        self._on_master_change = on_master_change
        self._last_master: object = None

    async def get_master_address(self) -> Any:
        address = await super().get_master_address()  # type: ignore[no-untyped-call]  # redis-py: untyped
        if self._last_master is not None and address != self._last_master and self._on_master_change:
            self._on_master_change()
        self._last_master = address
        return address


def _sentinel_client(
    parsed: SentinelUrl, name: str, timeouts: dict[str, Any], on_master_change: Callable[[], None] | None
) -> aioredis.Redis:
    sentinel_login = {"username": parsed.sentinel_username, "password": parsed.sentinel_password}
    sentinel = MajoritySentinel(  # type: ignore[no-untyped-call]  # redis-py: untyped
        list(parsed.sentinels),
        sentinel_kwargs={**timeouts, **{k: v for k, v in sentinel_login.items() if v}},
        **timeouts,
    )
    client: aioredis.Redis = sentinel.master_for(
        parsed.service,
        connection_pool_class=_WatchedMasterPool,
        on_master_change=on_master_change,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        client_name=name,
    )
    return client
