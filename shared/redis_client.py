"""Fleet mode's Redis client, built from the settings in one place for every part of the worker.

TLS (``rediss://`` with its ``ssl_*`` options) and the ACL user and password come in
``RECALLS_REDIS_URL`` itself.  Every socket operation, connecting included, gives up after
:data:`REDIS_TIMEOUT_S`: a Redis that does not answer is an outage (:mod:`recalls.shared.redis_hold` waits it
out) or a failed readiness probe, never a caller stuck on a dead connection.
"""

from __future__ import annotations

from redis import asyncio as aioredis

from recalls.shared.settings import Settings

REDIS_TIMEOUT_S = 2


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client of the settings' Redis; it connects on its first command.  Only in fleet mode."""
    if settings.redis_url is None:
        raise ValueError("RECALLS_REDIS_URL is not set: local mode has no Redis")
    client: aioredis.Redis = aioredis.Redis.from_url(  # redis-py leaves from_url untyped
        settings.redis_url.get_secret_value(),
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
    )
    return client
