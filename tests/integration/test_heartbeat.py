"""The heartbeat the broker agrees with the fleet: short by default, the URL's own when it names one.

Asked of RabbitMQ itself (``rabbitmqctl list_connections``), since what counts is what the broker uses to
notice a hung connection.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import SecretStr

from recalls.producers.broker import connect as connect_producer
from recalls.shared.amqp import DEFAULT_HEARTBEAT_S, connect
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
async def test_worker_and_producer_connections_beat_as_configured(query: str, expected: int) -> None:
    settings = base_settings("hb", amqp_url=SecretStr(f"amqp://guest:guest@127.0.0.1:5672/{query}"))
    worker_name, producer_name = f"hb-worker-{uuid.uuid4().hex}", f"hb-producer-{uuid.uuid4().hex}"
    worker = await connect(settings, worker_name)
    producer = await connect_producer(settings.amqp_url.get_secret_value(), name=producer_name)
    try:
        assert await heartbeat_of(worker_name) == expected
        assert await heartbeat_of(producer_name) == expected
    finally:
        await worker.close()
        await producer.close()
