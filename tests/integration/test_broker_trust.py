"""Who may speak on the broker: the fleet believes a message only as far as its sender's broker user.

Each test makes its broker users with ``rabbitmqctl`` on the loopback RabbitMQ (random names and
passwords, permissions on the default vhost limited to the test's prefix) and deletes them afterwards.
RabbitMQ refuses a message whose ``user_id`` is not its connection's user, so ``user_id`` names the
sender: a stranger can leave it out, but cannot claim another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aio_pika
import msgspec
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelPreconditionFailed
from click.testing import CliRunner
from pamqp.common import FieldValue

from recalls.cli.main import cli
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher, QueueFull
from recalls.shared.contracts import CreateCommand, DeleteCommand, GetCommand, OutcomeEvent
from recalls.shared.settings import Settings
from recalls.shared.store.checks import VinChecks
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.shared.topology import DELIVERY_LIMIT, Topology, TopologyError, declare, topology_of
from recalls.workers.runtime import Worker
from tests.integration.conftest import Collected, DeadLetters, Events, Sandbox, publish, running_worker
from tests.support.logged import watching
from tests.support.polling import poll_until

FAR_FUTURE = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class BrokerUser:
    name: str
    password: str

    @property
    def url(self) -> str:
        return f"amqp://{self.name}:{self.password}@127.0.0.1:5672/"


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, error = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args[0]}: {error.decode(errors='replace')}"


@contextlib.asynccontextmanager
async def broker_user(
    *, configure: str = "^$", write: str = "^$", read: str = "^$"
) -> AsyncIterator[BrokerUser]:
    """A broker user with these permissions (regexes) on the default vhost, deleted afterwards."""
    user = BrokerUser(f"it-user-{uuid.uuid4().hex[:10]}", secrets.token_hex(16))
    await rabbitmqctl("add_user", user.name, user.password)
    try:
        await rabbitmqctl("set_permissions", "-p", "/", user.name, configure, write, read)
        yield user
    finally:
        await rabbitmqctl("delete_user", user.name)


def changed(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with ``changes``, validated as settings are."""
    return Settings(**{**dict(settings), **changes})


def only(prefix: str, *names: str) -> str:
    """A permission regex matching exactly ``<prefix>.<name>`` for each of ``names`` (themselves regexes)."""
    return "^(" + "|".join(f"{re.escape(prefix)}\\.{name}" for name in names) + ")$"


@pytest.fixture
async def publisher_user(prefix: str) -> AsyncIterator[BrokerUser]:
    """A publisher as an operator would make one: it may write commands and nothing else."""
    async with broker_user(write=only(prefix, "commands")) as user:
        yield user


@pytest.fixture
async def stranger(prefix: str) -> AsyncIterator[BrokerUser]:
    """Someone who may publish commands and outcome events, and is in no list of the fleet's."""
    async with broker_user(write=only(prefix, "commands", "events")) as user:
        yield user


@contextlib.asynccontextmanager
async def channel_of(user: BrokerUser) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(user.url)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def publish_event(
    channel: AbstractChannel, settings: Settings, event: OutcomeEvent, key: str, *, user_id: str | None = None
) -> None:
    exchange = await channel.get_exchange(Topology(settings.prefix).events_exchange, ensure=False)
    message = aio_pika.Message(msgspec.json.encode(event), message_id=event.message_id, user_id=user_id)
    await exchange.publish(message, routing_key=key)


def an_event(vin: str, verb: Any, *, at: dt.datetime, **fields: Any) -> OutcomeEvent:
    return OutcomeEvent(
        message_id=str(uuid.uuid4()),
        verb=verb,
        vin=vin,
        result="applied",
        attempts=1,
        issued_at=at,
        first_seen_at=at,
        completed_at=at,
        **fields,
    )


def created_in_2099(vin: str, reference: str) -> OutcomeEvent:
    return an_event(
        vin,
        "create",
        at=FAR_FUTURE,
        dvsa_status=201,
        manufacturer_campaign_reference=reference,
        recall_campaign_start_date=dt.date(2025, 1, 1),
    )


async def dead_letter(dead: DeadLetters, count: int = 1) -> list[AbstractIncomingMessage]:
    return await dead.wait_for(count, timeout=30)


def reason_of(message: AbstractIncomingMessage) -> str:
    return str((message.headers or {}).get("x-reason", ""))


async def dvsa_verbs(sandbox: Sandbox) -> list[str]:
    return [entry["verb"] for entry in await sandbox.requests() if entry["verb"] != "token"]


async def test_a_publisher_stamps_each_command_with_its_broker_user(
    settings: Settings, channel: AbstractChannel, prefix: str
) -> None:
    everything = only(prefix, ".+")  # may declare the topology too: this test is about the stamp alone
    permissions = {"configure": everything, "write": everything, "read": everything}
    async with (
        broker_user(**permissions) as user,
        Publisher.connect(publisher_config(changed(settings, amqp_url=user.url))) as publisher,
    ):
        await publisher.publish(GetCommand(vin="WAUZZZF49HA036784"))
    queue = await channel.get_queue(Topology(settings.prefix).command_queue("get"))
    message = await queue.get(no_ack=True, fail=True)
    assert message is not None and message.user_id == user.name


async def test_a_publisher_that_declares_nothing_needs_only_write_on_the_commands_exchange(
    settings: Settings, channel: AbstractChannel, prefix: str, publisher_user: BrokerUser
) -> None:
    await declare(channel, topology_of(settings))  # as the admin: recalls topology
    config = replace(publisher_config(settings), amqp_url=publisher_user.url, declare=False)
    async with Publisher.connect(config) as publisher:
        await publisher.publish(GetCommand(vin="WAUZZZF49HA036784"))
    queue = await channel.get_queue(Topology(settings.prefix).command_queue("get"))
    message = await queue.get(no_ack=True, fail=True)
    assert message is not None and message.user_id == publisher_user.name


async def test_a_command_from_an_unlisted_user_is_dead_lettered_and_never_reaches_dvsa(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    dead: DeadLetters,
    publisher_user: BrokerUser,
    stranger: BrokerUser,
) -> None:
    trusting = changed(settings, publisher_users=(publisher_user.name,))
    forged = CreateCommand(
        vin="SALGA2EV5HA000001",
        manufacturer_campaign_reference="RC-1",
        recall_campaign_start_date=dt.date.today(),
    )
    genuine = GetCommand(vin="SALGA2EV5HA000002")
    async with (
        running_worker(trusting),
        channel_of(stranger) as strangers,
        channel_of(publisher_user) as ours,
    ):
        await publish(strangers, settings, forged, user_id=stranger.name)
        [letter] = await dead_letter(dead)
        await publish(ours, settings, genuine, user_id=publisher_user.name)
        [event] = await events.wait_for(1)
    assert reason_of(letter).startswith("untrusted_sender") and stranger.name in reason_of(letter)
    assert letter.message_id == forged.message_id
    assert event.message_id == genuine.message_id
    assert await dvsa_verbs(sandbox) == ["get"]
    assert await sandbox.recalls() == []


async def test_without_publisher_users_any_sender_is_taken_with_one_warning(
    settings: Settings, channel: AbstractChannel, events: Events, stranger: BrokerUser
) -> None:
    command = GetCommand(vin="SALGA2EV5HA000003")
    with watching("recalls.worker", "RECALLS_PUBLISHER_USERS is not set") as warned:
        async with running_worker(settings), channel_of(stranger) as strangers:
            await publish(strangers, settings, command)
            [event] = await events.wait_for(1)
    assert event.message_id == command.message_id and event.result == "applied"
    assert warned.count == 1


async def test_a_forged_event_changes_neither_the_ledger_nor_the_cache_of_checks(
    settings: Settings, channel: AbstractChannel, dead: DeadLetters, worker: Worker, stranger: BrokerUser
) -> None:
    vin = "SALGA2EV5HA000004"
    checked = an_event(vin, "get", at=FAR_FUTURE, recalls=[])
    created = created_in_2099(vin, "RC-4")
    async with channel_of(stranger) as strangers:
        await publish_event(strangers, settings, checked, "recall.checked")
        await publish_event(strangers, settings, created, "recall.created")
        letters = await dead_letter(dead, 2)
        with pytest.raises(ChannelPreconditionFailed):  # nor can a stranger claim to be the fleet
            exchange = await strangers.get_exchange(Topology(settings.prefix).events_exchange, ensure=False)
            await exchange.publish(aio_pika.Message(b"{}", user_id="guest"), routing_key="recall.checked")
    assert {letter.message_id for letter in letters} == {checked.message_id, created.message_id}
    assert all(reason_of(letter).startswith("untrusted_sender") for letter in letters)
    async with Database.connect(settings) as db:
        assert await VinChecks(db).fresh([vin], since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == {}
        assert await Ledger(db).for_vin(vin) == []


async def test_forged_attempt_headers_from_a_publisher_are_ignored(
    settings: Settings, channel: AbstractChannel, events: Events, publisher_user: BrokerUser
) -> None:
    trusting = changed(settings, publisher_users=(publisher_user.name,))
    command = GetCommand(vin="SALGA2EV5HA000005")
    forged = {"x-attempts": 99, "x-waits": 3, "x-first-seen": 1, "x-maybe-applied": True, "x-history": ["x"]}
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with running_worker(trusting), channel_of(publisher_user) as ours:
        await publish(ours, settings, command, headers=forged, user_id=publisher_user.name)
        [event] = await events.wait_for(1)
    assert event.attempts == 1
    assert event.first_seen_at >= before


async def test_a_retry_comes_back_as_the_workers_own_and_keeps_its_history(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events, publisher_user: BrokerUser
) -> None:
    trusting = changed(settings, publisher_users=(publisher_user.name,))
    command = GetCommand(vin="SALGA2EV5HA000006")
    await sandbox.faults(error_rate=1.0)
    async with running_worker(trusting), channel_of(publisher_user) as ours:
        await publish(ours, settings, command, user_id=publisher_user.name)
        await poll_until(lambda: dvsa_verbs(sandbox), lambda verbs: "get" in verbs)
        await sandbox.faults(error_rate=0.0)
        [event] = await events.wait_for(1)
    assert (event.result, event.attempts) == ("applied", 2)


async def test_a_command_issued_two_hours_ahead_is_dead_lettered_and_supersedes_nothing(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    dead: DeadLetters,
    worker: Worker,
) -> None:
    vin, reference = "SALGA2EV5HA000007", "RC-7"
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    delete = DeleteCommand(vin=vin, manufacturer_campaign_reference=reference, issued_at=ahead)
    await publish(channel, settings, delete)
    [letter] = await dead_letter(dead)
    create = CreateCommand(
        vin=vin, manufacturer_campaign_reference=reference, recall_campaign_start_date=dt.date(2025, 1, 1)
    )
    await publish(channel, settings, create)
    by_id = {event.message_id: event for event in await events.wait_for(2)}
    assert reason_of(letter).startswith("issued_in_future")
    assert by_id[delete.message_id].result == "failed"
    assert by_id[create.message_id].result == "applied"
    assert await dvsa_verbs(sandbox) == ["create"]
    assert [recall["manufacturerCampaignReference"] for recall in await sandbox.recalls()] == [reference]


async def test_a_future_time_in_an_event_of_the_fleet_is_recorded_as_now(
    settings: Settings, channel: AbstractChannel, worker: Worker
) -> None:
    vin = "SALGA2EV5HA000008"
    created = created_in_2099(vin, "RC-8")
    await publish_event(channel, settings, created, "recall.created", user_id="guest")  # the fleet's user
    assert worker.recorder is not None
    async with asyncio.timeout(30):
        await worker.recorder.recorded(1)
    now = dt.datetime.now(dt.UTC)
    async with Database.connect(settings) as db:
        [entry] = await Ledger(db).for_vin(vin)
    assert entry.state == "open"
    assert entry.updated_at.replace(tzinfo=dt.UTC) <= now
    assert entry.issued_at is not None and entry.issued_at.replace(tzinfo=dt.UTC) <= now


async def test_a_reply_to_naming_a_shared_queue_gets_nothing(
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
    worker: Worker,
) -> None:
    victim = await channel.declare_queue(f"{settings.prefix}.victim", durable=True)
    try:
        command = GetCommand(vin="SALGA2EV5HA000009")
        with watching("recalls.worker", "reply_to is no queue of the sender's own") as warned:
            await publish(channel, settings, command, reply_to=victim.name)
            await warned.seen(1)
        [event] = await events.wait_for(1)
        underlay = await channel.get_underlay_channel()
        declared = await underlay.queue_declare(victim.name, passive=True)
    finally:
        await victim.delete(if_unused=False, if_empty=False)
    assert event.message_id == command.message_id
    assert declared.message_count == 0


async def test_a_full_command_queue_makes_the_publisher_raise_queue_full(
    settings: Settings, broker: AbstractRobustConnection
) -> None:
    capped = changed(settings, command_queue_max_length=2)
    refused: QueueFull | None = None
    async with Publisher.connect(publisher_config(capped)) as publisher:
        for number in range(20):  # a quorum queue may take a few past its cap before it refuses
            try:
                await publisher.publish(GetCommand(vin=f"SALGA2EV5HA1000{number:02d}"))
            except QueueFull as exc:
                refused = exc
                break
    assert refused is not None and number >= 2
    queue = Topology(settings.prefix).command_queue("get")
    assert f"queue {queue!r} is full" in str(refused)
    assert "RECALLS_COMMAND_QUEUE_MAX_LENGTH" in str(refused)


async def test_recalls_topology_says_how_to_cap_a_queue_an_earlier_version_declared(
    settings: Settings, broker: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    # As an earlier version left it: the same queue without x-max-length.
    queue = Topology(settings.prefix).command_queue("get")
    arguments: dict[str, FieldValue] = {
        "x-queue-type": "quorum",
        "x-overflow": "reject-publish",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": Topology(settings.prefix).dead_exchange,
        "x-dead-letter-strategy": "at-least-once",
    }
    await channel.queue_delete(queue)
    uncapped = await channel.declare_queue(queue, durable=True, arguments=arguments)
    await uncapped.bind(Topology(settings.prefix).commands_exchange, routing_key="get")
    environment = {"RECALLS_PREFIX": settings.prefix, "RECALLS_RETRY_TIERS": "[0.2, 0.5, 1.0, 2.0]"}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["topology"], env=environment)
    assert result.exit_code == 1
    assert f"queue '{uncapped.name}' exists with other arguments" in result.stderr
    assert (
        f"rabbitmqctl delete_queue {uncapped.name}" in result.stderr and "recalls topology" in result.stderr
    )
    # The fleet goes on using the queue as it is.
    async with Publisher.connect(publisher_config(settings)) as publisher:
        await publisher.publish(GetCommand(vin="SALGA2EV5HA000010"))


def worker_permissions(prefix: str) -> dict[str, str]:
    """What an operator grants a worker: no configure but its budget lock, its queues, its exchanges."""
    return {
        # The local-mode budget lock is an exclusive queue of the worker's own (recalls.workers.budget).
        "configure": only(prefix, "worker\\.local"),
        "write": only(prefix, "events", "dead", "retry\\..+"),
        "read": only(prefix, "(create|fix|delete|get)(\\.bulk|\\.background)?", "ledger"),
    }


async def test_a_worker_that_may_not_configure_works_once_an_admin_declared_the_topology(
    settings: Settings, broker: AbstractRobustConnection, channel: AbstractChannel, prefix: str
) -> None:
    await declare(channel, topology_of(settings))  # as the admin: recalls topology
    arrived: Collected[AbstractIncomingMessage] = Collected(lambda message: message)
    replies = await channel.declare_queue(exclusive=True, auto_delete=True)
    await replies.bind(Topology(prefix).events_exchange, routing_key="#")
    await replies.consume(arrived.on_message)
    command = GetCommand(vin="SALGA2EV5HA000011")
    async with broker_user(**worker_permissions(prefix)) as worker_user:
        as_worker = changed(settings, amqp_url=worker_user.url)
        async with running_worker(as_worker) as worker:
            await publish(channel, settings, command)
            [message] = await arrived.wait_for(1)
            assert worker.recorder is not None
            async with asyncio.timeout(30):
                await worker.recorder.recorded(1)  # its own events are the fleet's
    assert message.message_id == command.message_id and message.user_id == worker_user.name


async def test_fleet_processes_that_may_not_configure_say_to_run_recalls_topology(
    settings: Settings, broker: AbstractRobustConnection, prefix: str, publisher_user: BrokerUser
) -> None:
    as_publisher = changed(settings, amqp_url=publisher_user.url)
    with pytest.raises(TopologyError, match="run `recalls topology`") as publishing:
        async with Publisher.connect(publisher_config(as_publisher)):
            pass
    async with broker_user(**worker_permissions(prefix)) as worker_user:
        as_worker = changed(settings, amqp_url=worker_user.url)
        with pytest.raises(TopologyError, match="run `recalls topology`") as working:
            async with running_worker(as_worker):
                pass
    for caught, user in ((publishing, publisher_user), (working, worker_user)):
        assert f"RECALLS_PREFIX={prefix}" in str(caught.value)
        assert user.password not in str(caught.value)
