"""The publisher against the real RabbitMQ: what lands where, and every way a publish can fail."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelNotFoundEntity

from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.amqp import BrokerUnreachable, Unroutable
from recalls.shared.contracts import (
    VERBS,
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    Lane,
    Verb,
)
from recalls.shared.settings import Settings, load_settings
from recalls.shared.topology import LANES, Topology, TopologyError, missing_exchanges
from recalls.shared.validation import InvalidCommand, decode_command, validate

pytestmark = pytest.mark.integration

QueueCount = Callable[..., Awaitable[int]]
VIN = "WAUZZZF49HA036784"


def a_command(verb: Verb, *, vin: str = VIN, number: int = 0) -> Command:
    reference = f"ABC{number}"
    match verb:
        case "create":
            return CreateCommand(
                vin=vin,
                manufacturer_campaign_reference=reference,
                recall_campaign_start_date=dt.date(2024, 1, 2),
            )
        case "fix":
            return FixCommand(
                vin=vin, manufacturer_campaign_reference=reference, rectification_date=dt.date.today()
            )
        case "delete":
            return DeleteCommand(vin=vin, dvsa_campaign_reference="R/2022/123")
        case "get":
            return GetCommand(vin=vin, correlation_id=f"batch-{number}")


async def all_queues_empty(names: Topology, queue_count: QueueCount) -> bool:
    counts = [await queue_count(names.command_queue(verb, lane)) for verb in VERBS for lane in LANES]
    return not any(counts)


@pytest.mark.parametrize("verb", VERBS)
async def test_each_verb_lands_in_its_queue_as_a_persistent_json_message(
    settings: Settings, names: Topology, connection: AbstractConnection, verb: Verb
) -> None:
    command = a_command(verb, vin=VIN.lower())
    async with Publisher.connect(publisher_config(settings)) as publisher:
        message_id = await publisher.publish(command, reply_to="amq.gen-replies")

    async with connection.channel() as channel:
        queue = await channel.get_queue(names.command_queue(verb))
        message = await queue.get(no_ack=True, fail=True)
    assert message is not None
    assert message_id == command.message_id == message.message_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.type == verb
    assert message.reply_to == "amq.gen-replies"
    assert message.correlation_id == command.correlation_id
    assert message.timestamp == command.issued_at.replace(microsecond=0)
    # The body is the validated command: the same fields, the VIN upper-cased.
    assert decode_command(message.body) == validate(command)
    assert decode_command(message.body).vin == VIN
    assert message.body.startswith(b'{"verb":"' + verb.encode())


@pytest.mark.parametrize("lane", ["bulk", "background"])
@pytest.mark.parametrize("verb", VERBS)
async def test_a_lane_goes_to_the_verbs_queue_of_that_lane(
    settings: Settings,
    names: Topology,
    connection: AbstractConnection,
    queue_count: QueueCount,
    verb: Verb,
    lane: Lane,
) -> None:
    async with Publisher.connect(publisher_config(settings)) as publisher:
        await publisher.publish(a_command(verb), lane=lane)
    assert names.command_queue(verb, lane) == f"{settings.prefix}.{verb}.{lane}"
    assert await queue_count(names.command_queue(verb, lane), expected=1) == 1
    for other in LANES:
        if other != lane:
            assert await queue_count(names.command_queue(verb, other)) == 0


async def test_a_command_with_no_queue_to_go_to_raises_unroutable(
    settings: Settings, names: Topology, connection: AbstractConnection
) -> None:
    async with Publisher.connect(publisher_config(settings)) as publisher:
        async with connection.channel() as channel:
            await channel.queue_delete(names.command_queue("create"))
        with pytest.raises(Unroutable):
            await publisher.publish(a_command("create"))
        # The other verbs still have their queues.
        await publisher.publish(a_command("get"))


async def test_an_invalid_command_raises_and_nothing_is_queued(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    async with Publisher.connect(publisher_config(settings)) as publisher:
        with pytest.raises(InvalidCommand) as caught:
            await publisher.publish(a_command("create", vin="WAUZZZF49HA0367"))
        with pytest.raises(InvalidCommand):
            await publisher.publish(GetCommand(vin=VIN, message_id=""))
    assert [error.field for error in caught.value.errors] == ["vin"]
    assert await all_queues_empty(names, queue_count)


async def test_an_unknown_lane_is_refused_rather_than_sent_to_bulk(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    async with Publisher.connect(publisher_config(settings)) as publisher:
        with pytest.raises(ValueError, match="lane"):
            await publisher.publish(a_command("get"), lane="Live")  # type: ignore[arg-type]
    assert await all_queues_empty(names, queue_count)


async def test_a_reply_to_of_someone_elses_queue_is_refused_before_anything_is_sent(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    async with Publisher.connect(publisher_config(settings)) as publisher:
        with pytest.raises(ValueError, match="reply_to must be a server-named queue"):
            await publisher.publish(a_command("get"), reply_to=names.ledger_queue)
        with pytest.raises(ValueError, match="reply_to"):
            await publisher.publish_many([a_command("get")], reply_to="replies")
    assert await all_queues_empty(names, queue_count)


async def test_publish_many_confirms_and_queues_two_thousand_commands(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    commands = [a_command("create", number=number) for number in range(2000)]
    async with Publisher.connect(publisher_config(settings)) as publisher:
        results = await publisher.publish_many(commands, lane="bulk", max_in_flight=500)
    assert results == [command.message_id for command in commands]
    assert await queue_count(names.command_queue("create", "bulk"), expected=2000) == 2000


async def test_publish_many_reports_each_failure_in_its_place(
    settings: Settings, names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    good_create, good_get = a_command("create"), a_command("get")
    unroutable = a_command("fix")
    commands = [good_create, a_command("get", vin="NOT-A-VIN"), unroutable, good_get]
    async with Publisher.connect(publisher_config(settings)) as publisher:
        async with connection.channel() as channel:
            await channel.queue_delete(names.command_queue("fix"))
        results = await publisher.publish_many(commands)
    assert results[0] == good_create.message_id
    assert isinstance(results[1], InvalidCommand)
    assert isinstance(results[2], Unroutable)
    assert results[3] == good_get.message_id
    assert await queue_count(names.command_queue("get"), expected=1) == 1


async def test_copies_of_one_message_in_flight_are_each_told_they_were_unroutable(
    settings: Settings, names: Topology, connection: AbstractConnection
) -> None:
    # aiormq pairs a returned message with its confirm by message_id; concurrent copies of one id
    # used to let an unroutable copy be reported as confirmed.
    command = a_command("delete")
    async with Publisher.connect(publisher_config(settings)) as publisher:
        async with connection.channel() as channel:
            await channel.queue_delete(names.command_queue("delete"))
        results = await publisher.publish_many([command] * 8)
        singles = await asyncio.gather(
            *(publisher.publish(command) for _ in range(4)), return_exceptions=True
        )
    assert all(isinstance(result, Unroutable) for result in [*results, *singles])


async def test_a_publisher_on_a_callers_connection_leaves_it_open(
    names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    async with Publisher.on_connection(connection, names, declare=True) as publisher:
        await publisher.publish(a_command("get"))
    assert not connection.is_closed
    assert await queue_count(names.command_queue("get"), expected=1) == 1


async def test_a_broker_that_never_answers_fails_within_the_connect_timeout(prefix: str) -> None:
    async def accept_and_stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings(prefix=prefix, amqp_url=f"amqp://guest:secretpw@127.0.0.1:{port}/")
    async with server:
        with pytest.raises(BrokerUnreachable) as caught:
            async with (
                asyncio.timeout(10),
                Publisher.connect(replace(publisher_config(settings), connect_timeout=0.5)),
            ):
                pass
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "secretpw" not in str(caught.value)


async def test_a_refused_connection_names_the_broker_but_not_the_password(prefix: str) -> None:
    settings = load_settings(prefix=prefix, amqp_url=f"amqp://guest:secretpw@127.0.0.1:1/{uuid.uuid4().hex}")
    with pytest.raises(BrokerUnreachable, match=r"RabbitMQ unreachable at 127\.0\.0\.1:1 ") as caught:
        async with Publisher.connect(publisher_config(settings)):
            pass
    assert "secretpw" not in str(caught.value)


async def test_without_declare_a_publisher_declares_nothing_and_says_the_exchange_is_missing(
    settings: Settings, names: Topology, connection: AbstractConnection
) -> None:
    config = replace(publisher_config(settings), declare=False)
    with pytest.raises(TopologyError, match=rf"no exchange '{names.commands_exchange}'.*recalls topology"):
        async with Publisher.connect(config):
            pass
    assert await missing_exchanges(connection, [names.commands_exchange, names.retry_name(0)]) == [
        names.commands_exchange,
        names.retry_name(0),
    ]


async def test_without_declare_a_missing_queue_is_unroutable_and_nothing_is_declared(
    settings: Settings, names: Topology, connection: AbstractConnection
) -> None:
    async with connection.channel() as channel:
        await channel.declare_exchange(names.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    async with Publisher.connect(replace(publisher_config(settings), declare=False)) as publisher:
        with pytest.raises(Unroutable):
            await publisher.publish(a_command("create"))
    assert await missing_exchanges(connection, [names.retry_name(0), names.events_exchange]) == [
        names.retry_name(0),
        names.events_exchange,
    ]
    with pytest.raises(ChannelNotFoundEntity):
        async with connection.channel() as channel:
            await channel.declare_queue(names.command_queue("create"), passive=True)
