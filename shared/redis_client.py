"""Fleet mode's Redis client, built from the settings in one place for every part of the worker.

TLS (``rediss://`` with its ``ssl_*`` options) and the ACL user and password come in
``RECALLS_REDIS_URL`` itself.  Every socket operation, connecting included, gives up after
:data:`REDIS_TIMEOUT_S`: a Redis that does not answer is an outage (:mod:`recalls.shared.redis_hold` waits it
out) or a failed readiness probe, never a caller stuck on a dead connection.

The pool holds at most :data:`REDIS_CONNECTIONS`: every command the fleet sends Redis is one short
script or key operation, so a few connections carry a worker's whole load, and a burst waits for one
of them instead of opening sockets the worker then keeps for the rest of its life.
"""

from __future__ import annotations

from redis import asyncio as aioredis

from recalls.shared.settings import Settings

REDIS_TIMEOUT_S = 2
REDIS_CONNECTIONS = 4


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client of the settings' Redis; it connects on its first command.  Only in fleet mode."""
    if settings.redis_url is None:
        raise ValueError("RECALLS_REDIS_URL is not set: local mode has no Redis")
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=REDIS_CONNECTIONS,
        timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        client_name=f"{settings.prefix}-fleet",  # names the fleet's connections in CLIENT LIST
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # the client closes the pool with itself
    return client
