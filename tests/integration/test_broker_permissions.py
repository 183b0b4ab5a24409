"""The role users of deploy/rabbitmq/definitions.json do their role's work on the real RabbitMQ, and no more.

The definitions are rendered by deploy/render.sh with random passwords, as the broker's container does at
start, then renamed into a throwaway vhost and users and imported with ``rabbitmqctl``; everything is
deleted afterwards.  The checks use aio-pika directly, not the fleet's code, so they prove the
definitions alone: what the fleet's processes do with them is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused
from pamqp.commands import Basic

from recalls.shared.topology import Topology, declare

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
RENDER = ROOT / "deploy" / "render.sh"
ROLES = ("admin", "worker", "api", "publisher")
TOPOLOGY = Topology("recalls", (1, 5))  # the definitions are written for the default prefix
Connect = Callable[[str], Awaitable[AbstractConnection]]
Action = Callable[[AbstractChannel], Awaitable[Any]]


async def run(*command: str, env: Mapping[str, str] | None = None, check: bool = True) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0 or not check, (command, out.decode(), err.decode())


def renamed(definitions: dict[str, Any], vhost: str, users: Mapping[str, str]) -> dict[str, Any]:
    """The definitions with vhost "/" and each ``recalls-<role>`` user under this test's names."""
    assert [entry["name"] for entry in definitions["vhosts"]] == ["/"]
    for entry in definitions["users"]:
        entry["name"] = users[entry["name"]]
    for entry in definitions["permissions"]:
        assert entry["vhost"] == "/"
        entry["user"], entry["vhost"] = users[entry["user"]], vhost
    return {**definitions, "vhosts": [{"name": vhost}]}


@pytest.fixture
async def role_urls(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """Role -> AMQP URL of that role's user, in a vhost of its own."""
    tag = f"perm-{uuid.uuid4().hex[:10]}"
    passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
    users = {f"recalls-{role}": f"{tag}-{role}" for role in ROLES}
    env = {**os.environ, **{f"RABBITMQ_{role.upper()}_PASSWORD": passwords[role] for role in ROLES}}
    rendered = tmp_path / "definitions.json"
    await run("sh", str(RENDER), "rabbitmq", str(DEFINITIONS), str(rendered), env=env)
    # Where the rabbitmq user, as whom rabbitmqctl may run, can read it: only hashes of throwaway passwords.
    imported = Path(tempfile.gettempdir()) / f"{tag}.json"
    imported.write_text(json.dumps(renamed(json.loads(rendered.read_text()), tag, users)))
    imported.chmod(0o644)
    try:
        await run("rabbitmqctl", "-q", "import_definitions", str(imported))
        yield {role: f"amqp://{tag}-{role}:{passwords[role]}@127.0.0.1:5672/{tag}" for role in ROLES}
    finally:  # whatever the import got to: a failure to clean up must not hide the test's own
        imported.unlink()
        await run("rabbitmqctl", "-q", "delete_vhost", tag, check=False)
        for user in users.values():
            await run("rabbitmqctl", "-q", "delete_user", user, check=False)


@pytest.fixture
async def connect(role_urls: dict[str, str]) -> AsyncIterator[Connect]:
    """Opens connections as a role's user, with the topology the admin declared; closes them afterwards."""
    opened: list[AbstractConnection] = []

    async def as_role(role: str) -> AbstractConnection:
        connection = await aio_pika.connect(role_urls[role])
        opened.append(connection)
        return connection

    try:
        admin = await as_role("admin")
        await declare(await admin.channel(), TOPOLOGY)
        yield as_role
    finally:
        for connection in opened:
            await connection.close()


async def publish(channel: AbstractChannel, exchange: str, routing_key: str, body: bytes = b"{}") -> None:
    """A mandatory publish the broker confirms; raises what the broker answers otherwise."""
    target = await channel.get_exchange(exchange, ensure=False) if exchange else channel.default_exchange
    confirmation = await target.publish(aio_pika.Message(body), routing_key=routing_key, mandatory=True)
    assert isinstance(confirmation, Basic.Ack), confirmation


async def refused(connection: AbstractConnection, action: Action) -> None:
    """``action`` on a channel of its own (a refusal closes the channel) is refused with 403."""
    channel = await connection.channel()
    with pytest.raises(ChannelAccessRefused):
        await action(channel)


async def first_message(channel: AbstractChannel, queue_name: str) -> AbstractIncomingMessage:
    """Consume ``queue_name`` until a message arrives, and ack it."""
    arrived: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

    async def on_message(message: AbstractIncomingMessage) -> None:
        if not arrived.done():
            arrived.set_result(message)

    queue = await channel.get_queue(queue_name)
    tag = await queue.consume(on_message)
    message = await asyncio.wait_for(arrived, 10)
    await message.ack()
    await queue.cancel(tag)
    return message


async def stats_exchange(channel: AbstractChannel) -> AbstractExchange:
    """The workers' figures: a transient fanout exchange that whoever uses it declares."""
    return await channel.declare_exchange(
        TOPOLOGY.stats_exchange, aio_pika.ExchangeType.FANOUT, durable=False
    )


async def ignore(_message: AbstractIncomingMessage) -> None:
    """A consumer that only keeps a queue in use, as the rate budget's marker is."""


async def test_the_admin_configures_the_prefix_and_nothing_else(
    connect: Connect,
) -> None:
    admin = await connect("admin")
    await declare(await admin.channel(), TOPOLOGY)  # again: declaring is idempotent
    await refused(admin, lambda channel: channel.declare_queue("other.queue", durable=True))
    await refused(admin, lambda channel: publish(channel, "amq.direct", "x"))


async def test_a_publisher_publishes_commands_and_nothing_else(
    connect: Connect,
) -> None:
    publisher = await connect("publisher")
    await publish(await publisher.channel(), TOPOLOGY.commands_exchange, TOPOLOGY.routing_key("create"))
    await publish(await publisher.channel(), TOPOLOGY.commands_exchange, TOPOLOGY.routing_key("get", "bulk"))

    await refused(publisher, lambda channel: publish(channel, TOPOLOGY.events_exchange, "recall.created"))
    await refused(publisher, lambda channel: publish(channel, TOPOLOGY.retry_name(0), "create"))
    await refused(publisher, lambda channel: publish(channel, "", TOPOLOGY.command_queue("create")))
    await refused(publisher, lambda channel: channel.declare_queue("recalls.mine", durable=True))
    await refused(publisher, lambda channel: channel.declare_queue(exclusive=True))
    await refused(publisher, lambda channel: channel.queue_delete(TOPOLOGY.command_queue("create")))
    await refused(publisher, lambda channel: first_message(channel, TOPOLOGY.command_queue("create")))


async def test_a_worker_consumes_commands_and_publishes_outcomes_but_changes_no_topology(
    connect: Connect,
) -> None:
    publisher, worker, caller = await connect("publisher"), await connect("worker"), await connect("api")
    await publish(await publisher.channel(), TOPOLOGY.commands_exchange, "create", b'{"verb": "create"}')
    channel = await worker.channel()
    assert (await first_message(channel, TOPOLOGY.command_queue("create"))).body == b'{"verb": "create"}'

    await publish(channel, TOPOLOGY.events_exchange, "recall.created")
    await publish(channel, TOPOLOGY.retry_name(0), "create")
    await publish(channel, TOPOLOGY.dead_exchange, "")
    reply_queue = await (await caller.channel()).declare_queue(exclusive=True)  # a caller's reply_to
    await publish(channel, "", reply_queue.name)
    assert (await first_message(channel, TOPOLOGY.ledger_queue)).routing_key == "recall.created"
    # Queue depths are read with passive declares, which need no permission.
    await channel.declare_queue(TOPOLOGY.retry_name(0), passive=True)

    command_queue = TOPOLOGY.command_queue("create")
    await refused(worker, lambda channel: channel.declare_queue(command_queue, durable=True))
    await refused(worker, lambda channel: channel.declare_queue("recalls.mine", durable=True))
    await refused(worker, lambda channel: channel.declare_exchange("recalls.mine", durable=True))
    await refused(worker, lambda channel: channel.queue_delete(command_queue))
    await refused(worker, lambda channel: channel.exchange_delete(TOPOLOGY.events_exchange))
    await refused(worker, lambda channel: publish(channel, TOPOLOGY.commands_exchange, "create"))
    await refused(worker, lambda channel: first_message(channel, TOPOLOGY.dead_queue))


async def test_a_worker_takes_its_rate_budget_mark_and_publishes_its_figures(
    connect: Connect,
) -> None:
    """What workers/budget.py and workers/telemetry.py declare for themselves at start."""
    channel = await (await connect("worker")).channel()
    marker = await channel.declare_queue(
        "recalls.worker.fleet", auto_delete=True, arguments={"x-expires": 1000}
    )
    await marker.consume(ignore, no_ack=True)
    lock = await channel.declare_queue("recalls.worker.local", exclusive=True)
    await lock.delete()
    stats = await stats_exchange(channel)
    await stats.publish(aio_pika.Message(b"{}"), routing_key="")


async def test_the_batch_api_publishes_commands_and_reads_the_workers_figures(
    connect: Connect,
) -> None:
    api, worker = await connect("api"), await connect("worker")
    channel = await api.channel()
    await publish(channel, TOPOLOGY.commands_exchange, TOPOLOGY.routing_key("get", "bulk"))
    # The dashboard's feed: the stats exchange and an exclusive, server-named queue bound to it.
    stats = await stats_exchange(channel)
    feed = await channel.declare_queue(exclusive=True, auto_delete=True, arguments={"x-max-length": 10})
    await feed.bind(stats)
    await publish(await worker.channel(), TOPOLOGY.stats_exchange, "", b'{"worker": "w1"}')
    assert (await first_message(channel, feed.name)).body == b'{"worker": "w1"}'

    await refused(api, lambda channel: publish(channel, TOPOLOGY.events_exchange, "recall.created"))
    await refused(api, lambda channel: publish(channel, "", TOPOLOGY.command_queue("create")))
    await refused(api, lambda channel: channel.declare_queue(TOPOLOGY.command_queue("create"), durable=True))
    await refused(api, lambda channel: channel.queue_delete(TOPOLOGY.command_queue("create")))
    await refused(api, lambda channel: first_message(channel, TOPOLOGY.command_queue("create")))
