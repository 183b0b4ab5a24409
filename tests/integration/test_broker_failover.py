"""Every connection the fleet makes fails over between a cluster's nodes (RECALLS_AMQP_URL as a list).

The machine has one RabbitMQ node, so each "node" here is a loopback TCP proxy in front of it
(bench/faults/tcp_proxy.py): cutting a proxy is, for the client, its node going away.  The fault suite's
``cluster`` scenario does the same against a real three-node cluster.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from bench.faults.tcp_proxy import TcpProxy
from recalls.producers.config import PublisherConfig
from recalls.producers.publisher import Publisher
from recalls.shared.amqp import BrokerUnreachable, PublishFailed, connect
from recalls.shared.settings import Settings
from tests.support.commands import create, vin
from tests.support.polling import poll_until
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


def node_url(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
async def nodes() -> AsyncIterator[list[TcpProxy]]:
    """Two "nodes" of the broker: proxies to it, closed afterwards."""
    proxies = [TcpProxy("127.0.0.1", 5672), TcpProxy("127.0.0.1", 5672)]
    for proxy in proxies:
        await proxy.start()
    yield proxies
    for proxy in proxies:
        await proxy.close()


def reconnected(connection: AbstractRobustConnection) -> asyncio.Event:
    """Set once ``connection`` has reconnected and restored its channels."""
    done = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: done.set())
    return done


async def test_the_first_node_that_answers_is_used(nodes: list[TcpProxy]) -> None:
    down = free_port()
    connection = await connect(f"{node_url(down)},{node_url(nodes[1].port)}", name="failover-first")
    async with connection:
        assert connection.node == f"127.0.0.1:{nodes[1].port}"
        assert nodes[1].sessions == 1


async def test_a_lost_node_moves_the_connection_and_its_consumer_to_the_next(nodes: list[TcpProxy]) -> None:
    urls = ",".join(node_url(proxy.port) for proxy in nodes)
    queue_name = f"failover-{uuid.uuid4().hex[:8]}"
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await received.put(message.body)

    connection = await connect(urls, name="failover-consumer")
    async with connection, await aio_pika.connect(node_url(5672)) as publisher:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.consume(on_message)
        sending = await publisher.channel()

        for round_, (lost, next_) in enumerate([(0, 1), (1, 0)]):
            assert connection.node == f"127.0.0.1:{nodes[lost].port}"
            moved = reconnected(connection)
            await nodes[lost].cut()
            await asyncio.wait_for(moved.wait(), 30)
            assert connection.node == f"127.0.0.1:{nodes[next_].port}"
            await nodes[lost].restore()
            body = f"after loss {round_}".encode()
            await sending.default_exchange.publish(aio_pika.Message(body), routing_key=queue_name)
            assert await asyncio.wait_for(received.get(), 30) == body
        await channel.queue_delete(queue_name)


async def test_with_no_node_answering_the_error_names_each_without_a_password() -> None:
    ports = [free_port(), free_port()]
    urls = ",".join(f"amqp://guest:pw-never-shown@127.0.0.1:{port}/" for port in ports)
    with pytest.raises(BrokerUnreachable) as refused:
        await connect(urls, name="failover-none", connect_timeout=3)
    text = str(refused.value)
    assert text.startswith(f"RabbitMQ unreachable at 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]} (")
    assert "pw-never-shown" not in text


async def test_a_publisher_goes_on_publishing_on_the_next_node(
    nodes: list[TcpProxy], settings: Settings, channel: AbstractChannel
) -> None:
    urls = ",".join(node_url(proxy.port) for proxy in nodes)
    # The fleet's tiers, so that what it declares is the topology the channel fixture deletes after.
    config = PublisherConfig(
        urls, prefix=settings.prefix, declare=True, retry_tiers=tuple(settings.retry_tiers)
    )
    topology = config.topology
    async with Publisher.connect(config) as publisher:
        await publisher.publish(create(1))
        await nodes[0].cut()
        # A publish while the connection moves fails (PublishFailed): the caller sends it again, with
        # the same message_id, as after any lost confirm.
        command = create(2)

        async def publish_once() -> bool:
            try:
                await publisher.publish(command)
            except PublishFailed:
                return False
            return True

        await poll_until(publish_once, bool, timeout=30)
    queue = await channel.get_queue(topology.command_queue("create", "live"))
    bodies = []
    while (message := await queue.get(fail=False)) is not None:
        await message.ack()
        bodies.append(json.loads(message.body)["vin"])
    assert bodies == [vin(1), vin(2)]
