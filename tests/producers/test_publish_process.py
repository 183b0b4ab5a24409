"""PublisherProcess: publishing from a child process, against the real RabbitMQ."""

from __future__ import annotations

import datetime as dt
import os
import signal
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from aio_pika.abc import AbstractConnection

from recalls.producers.publish_process import PublisherProcess, _settings_frame
from recalls.shared.amqp import BrokerUnreachable, PublishFailed
from recalls.shared.contracts import Command, CreateCommand, FixCommand, GetCommand
from recalls.shared.settings import Settings, load_settings
from recalls.shared.topology import Topology
from recalls.shared.validation import InvalidCommand, decode_command, validate

pytestmark = pytest.mark.integration
QueueCount = Callable[..., Awaitable[int]]
VIN = "WAUZZZF49HA036784"
START = dt.date(2024, 1, 2)


def create(number: int, vin: str = VIN) -> Command:
    return CreateCommand(
        vin=vin, manufacturer_campaign_reference=f"RC-{number}", recall_campaign_start_date=START
    )


def fix() -> Command:
    return FixCommand(vin=VIN, manufacturer_campaign_reference="RC-0", rectification_date=dt.date(2024, 2, 1))


async def test_the_child_publishes_what_it_is_given_and_reports_each_result_in_its_place(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    good = [create(number) for number in range(300)]
    invalid = create(0, vin="NOT-A-VIN")
    unroutable = fix()
    async with connection.channel() as channel:
        async with PublisherProcess.start(settings, name="test-child") as publisher:
            await channel.queue_delete(names.command_queue("fix", "bulk"))
            results = await publisher.publish_many([*good, invalid, unroutable], lane="bulk")
        assert results[:300] == [command.message_id for command in good]
        assert isinstance(results[300], InvalidCommand)
        assert isinstance(results[301], PublishFailed) and "no queue" in str(results[301])

        assert await queue_count(names.command_queue("create", "bulk"), expected=300) == 300
        queue = await channel.get_queue(names.command_queue("create", "bulk"))
        message = await queue.get(no_ack=True, fail=True)
    assert message is not None
    assert (message.message_id, message.type) == (good[0].message_id, "create")
    assert decode_command(message.body) == validate(good[0])


async def test_ctrl_c_is_the_parents_the_child_keeps_publishing(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    async with PublisherProcess.start(settings, name="test-child") as publisher:
        os.kill(publisher.pid, signal.SIGINT)
        command = GetCommand(vin=VIN)
        assert await publisher.publish_many([command], lane="bulk") == [command.message_id]
    assert await queue_count(names.command_queue("get", "bulk"), expected=1) == 1


async def test_a_child_that_died_answers_every_command_with_publish_failed(
    settings: Settings, connection: AbstractConnection
) -> None:
    async with PublisherProcess.start(settings, name="test-child") as publisher:
        os.kill(publisher.pid, signal.SIGKILL)
        results = await publisher.publish_many([GetCommand(vin=VIN), create(1)], lane="bulk")
    assert all(isinstance(result, PublishFailed) for result in results)
    assert "publishing process exited" in str(results[0])


async def test_a_broker_the_child_cannot_reach_is_reported_without_the_password(prefix: str) -> None:
    settings = load_settings(prefix=prefix, amqp_url=f"amqp://guest:secretpw@127.0.0.1:1/{uuid.uuid4().hex}")
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:1") as caught:
        async with PublisherProcess.start(settings, name="test-child"):
            pass
    assert "secretpw" not in str(caught.value)


def test_the_child_gets_the_parents_settings_secrets_and_urls_included() -> None:
    settings = load_settings(
        prefix="t-frame",
        amqp_url="amqp://app:s3cret@broker:5672/fleet",
        redis_url="redis://:r3dis@cache:6379/0",
        dvsa_base_url="https://dvsa.example/recalls",
        dvsa_token_url="https://login.example/token",
        dvsa_client_id="client",
        dvsa_client_secret="client-secret",
        dvsa_scope="scope/.default",
        dvsa_api_key="api-key-0123456789",
        retry_tiers=(1, 5),
    )
    assert load_settings(**msgspec.msgpack.decode(_settings_frame(settings))) == settings
