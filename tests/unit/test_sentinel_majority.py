"""Fleet mode believes a Redis master only when most Sentinels name it (shared/redis_client.py).

Unit test with stand-ins for the Sentinels (objects answering SENTINEL MASTERS as redis-py parses it):
what matters is which answers add up to a master, not the network.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import ConnectionError as RedisConnectionError

from recalls.shared.redis_client import MajoritySentinel

SERVICE = "recalls-main"


class StandIn:
    """A Sentinel naming ``port`` as the master (None: it names none; "down": it does not answer)."""

    def __init__(self, port: int | str | None) -> None:
        self.port = port

    async def sentinel_masters(self) -> dict[str, Any]:
        if self.port == "down":
            raise RedisConnectionError("refused")
        if self.port is None:
            return {}
        flags = {"is_master": True, "is_sdown": False, "is_odown": False, "num-other-sentinels": 2}
        return {SERVICE: {"ip": "127.0.0.1", "port": self.port, **flags}}


def sentinels(*ports: int | str | None) -> MajoritySentinel:
    client = MajoritySentinel([])  # type: ignore[no-untyped-call]  # redis-py: untyped
    client.sentinels = [StandIn(port) for port in ports]  # type: ignore[misc]  # stand-ins
    return client


async def test_the_master_most_sentinels_name_is_believed() -> None:
    assert await sentinels(6391, 6391, 6392).discover_master(SERVICE) == ("127.0.0.1", 6391)
    assert await sentinels(6392, "down", 6392).discover_master(SERVICE) == ("127.0.0.1", 6392)


@pytest.mark.parametrize("ports", [(6391, 6392, None), (6391, "down", "down"), (None, None, None)])
async def test_without_a_majority_there_is_no_master(ports: tuple[int | str | None, ...]) -> None:
    with pytest.raises(MasterNotFoundError):
        await sentinels(*ports).discover_master(SERVICE)
