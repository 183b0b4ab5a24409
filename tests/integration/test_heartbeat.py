"""The heartbeat the broker agrees with the fleet's connections (workers, publishers, the API and the CLI
share one way to connect): short by default, the URL's own when it names one.

Asked of RabbitMQ itself (``rabbitmqctl list_connections``), since what counts is what the broker uses to
notice a hung connection.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import SecretStr

from recalls.shared.amqp import connect
from recalls.shared.broker_urls import DEFAULT_HEARTBEAT_S
from tests.integration.conftest import base_settings

pytestmark = pytest.mark.integration


async def heartbeat_of(name: str) -> int:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "--no-table-headers", "list_connections", "client_properties", "timeout",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    [line] = [line for line in out.decode().splitlines() if name in line]
    return int(line.rsplit(maxsplit=1)[-1])


@pytest.mark.parametrize(("query", "expected"), [("", DEFAULT_HEARTBEAT_S), ("?heartbeat=7", 7)])
async def test_the_fleets_connections_beat_as_configured(query: str, expected: int) -> None:
    settings = base_settings("hb", amqp_url=SecretStr(f"amqp://guest:guest@127.0.0.1:5672/{query}"))
    name = f"hb-{uuid.uuid4().hex}"
    connection = await connect(settings.amqp_url.get_secret_value(), name=name)
    try:
        assert await heartbeat_of(name) == expected
    finally:
        await connection.close()
