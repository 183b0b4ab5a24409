"""The publisher library: how a Python system hands recall commands to the fleet, safely.

For the manufacturer's Python systems and for the fleet's own CLI, importers and batch API.  A command
given to :class:`Publisher` is

* checked against DVSA's rules first (:func:`recalls.shared.validation.validate`), so a bad command fails in
  its sender, naming the field and the reason, instead of costing a rate-limited DVSA call;
* sent as a persistent JSON message, ``message_id`` = the command's idempotency key, routed mandatorily
  to its verb's queue in the live, bulk or background lane;
* reported sent only once RabbitMQ has confirmed that a durable queue holds it;
* stamped with the broker user it was sent as (``user_id``, checked by RabbitMQ), which the workers
  compare with ``RECALLS_PUBLISHER_USERS``.

A full command queue (``RECALLS_COMMAND_QUEUE_MAX_LENGTH``) refuses the command: :class:`QueueFull`.

Usage::

    config = PublisherConfig.from_env()  # or PublisherConfig("amqps://...", prefix="recalls")
    async with Publisher.connect(config) as publisher:
        message_id = await publisher.publish(command)
        results = await publisher.publish_many(commands, lane="bulk")

A failed publish may still have reached the queue (a lost confirm); publishing the same command again,
with the same ``message_id``, is always safe because the fleet applies each message_id once in effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import get_args

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from recalls.producers import broker
from recalls.producers.config import CONFIRM_TIMEOUT, PublisherConfig
from recalls.producers.keyed_lock import KeyedLock
from recalls.shared import amqp
from recalls.shared.amqp import Nacked, PublishFailed, is_own_reply_queue, publish_body_confirmed
from recalls.shared.contracts import Command, Lane
from recalls.shared.topology import Topology, ensure
from recalls.shared.validation import InvalidCommand, validate

PublishResult = str | Exception
"""Per command of :meth:`Publisher.publish_many`: its message_id once confirmed, or why it was not."""

DEFAULT_MAX_IN_FLIGHT = 1000


class QueueFull(PublishFailed):
    """The command's queue holds as many messages as it may: publish the command again later."""


class Publisher:
    """Publishes validated commands to ``<prefix>.commands`` and waits for the broker's confirms.

    Build one with :meth:`connect` (from a :class:`~recalls.producers.config.PublisherConfig`) or
    :meth:`on_connection` (sharing a connection the caller owns).  Neither declares anything unless
    asked: by default they check passively that ``<prefix>.commands`` exists, and a command whose queue
    is missing raises :class:`~recalls.Unroutable`.  With ``declare=True`` they declare whatever of
    the fleet's topology is missing (:func:`recalls.shared.topology.ensure`), as the fleet's own processes do.

    Which ``message_id`` to give a command:

    * anything a system may send again (after a crash, a timeout, a re-run of a job, a redelivered
      event of its own): derive it with :func:`recalls.shared.message_ids.message_id_for` from the command's
      business key and the system's own id of the event that caused it.  A command rebuilt for a retry
      then carries the same id, and the fleet applies it once;
    * a one-off command (a person at a prompt, a script run once): leave the default, a random UUID.
      Rebuilding such a command makes a new one, which the fleet applies again.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        topology: Topology,
        *,
        confirm_timeout: float | None = CONFIRM_TIMEOUT,
    ) -> None:
        """``channel`` must have publisher confirms on and the topology declared."""
        self._channel = channel
        self._topology = topology
        self._confirm_timeout = confirm_timeout
        self._sending = KeyedLock()

    @classmethod
    @asynccontextmanager
    async def connect(cls, config: PublisherConfig) -> AsyncIterator[Publisher]:
        """Connect to ``config.amqp_url``, check (or declare) the topology, and close everything on exit.

        Raises :class:`recalls.BrokerUnreachable` within ``config.connect_timeout`` seconds,
        and :class:`recalls.TopologyError` as :meth:`on_connection` does.
        """
        connection = await amqp.connect(
            config.amqp_url, name=config.name, connect_timeout=config.connect_timeout
        )
        async with (
            connection,
            cls.on_connection(
                connection, config.topology, declare=config.declare, confirm_timeout=config.confirm_timeout
            ) as publisher,
        ):
            yield publisher

    @classmethod
    @asynccontextmanager
    async def on_connection(
        cls,
        connection: AbstractConnection,
        topology: Topology,
        *,
        declare: bool = False,
        confirm_timeout: float | None = CONFIRM_TIMEOUT,
    ) -> AsyncIterator[Publisher]:
        """A publisher on its own channel of ``connection``; closes the channel, not the connection.

        Raises :class:`recalls.TopologyError` when ``<prefix>.commands`` is missing, or with
        ``declare=True`` when part of the topology is missing and the broker user may not declare it.
        """
        if declare:
            await ensure(connection, topology)
        else:
            await broker.require_exchange(connection, topology, topology.commands_exchange)
        # on_return_raises=False: a returned (unroutable) message then resolves its confirm with the
        # message itself, which publish_body_confirmed reports as Unroutable; with True, aiormq raises a
        # PublishError that cannot be told apart from a nack.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
        async with channel:
            yield cls(channel, topology, confirm_timeout=confirm_timeout)

    async def publish(self, command: Command, *, lane: Lane = "live", reply_to: str | None = None) -> str:
        """Validate, publish and return the message_id once the broker has confirmed it.

        Raises :class:`~recalls.InvalidCommand` (nothing sent),
        :class:`~recalls.Unroutable` (no queue for the verb and lane: topology missing),
        :class:`QueueFull` or :class:`~recalls.PublishFailed` (lost connection or no confirm in
        time), or ``ValueError`` for a lane other than "live", "bulk" or "background" or a
        ``reply_to`` that is no queue of the caller's own (workers send outcomes to no other).
        """
        checked = checked_command(command, lane=lane, reply_to=reply_to)
        await self._send(checked, lane, reply_to)
        return checked.message_id

    async def publish_many(
        self,
        commands: Iterable[Command],
        *,
        lane: Lane = "live",
        reply_to: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        validated: bool = False,
    ) -> list[PublishResult]:
        """Publish many commands with up to ``max_in_flight`` confirms outstanding at once.

        Every command is validated before any is sent (``validated=True``: the caller already ran
        :func:`~recalls.shared.validation.validate` on each).  Returns one result per command, in order: its
        message_id once confirmed, or the exception that stopped it (an invalid command is never sent
        and gets its :class:`~recalls.InvalidCommand`).  Never raises for one command.
        """
        checked = checked_commands(
            commands, lane=lane, reply_to=reply_to, max_in_flight=max_in_flight, validated=validated
        )
        results: list[PublishResult] = [item if isinstance(item, InvalidCommand) else "" for item in checked]
        sendable = [(i, item) for i, item in enumerate(checked) if not isinstance(item, InvalidCommand)]
        # Two half windows in turn: one fills while the other's last confirms come back.
        size = max(1, max_in_flight // 2)
        turns = asyncio.Semaphore(2)
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(sendable), size):
                await turns.acquire()
                window = sendable[start : start + size]
                group.create_task(self._send_window(window, lane, reply_to, results, turns))
        return results

    async def _send_window(
        self,
        window: list[tuple[int, Command]],
        lane: Lane,
        reply_to: str | None,
        results: list[PublishResult],
        turns: asyncio.Semaphore,
    ) -> None:
        """Send a window of commands under one deadline (a timer per message costs more than the send)."""
        try:
            sends = {
                asyncio.ensure_future(self._send(command, lane, reply_to, timed=False)): (index, command)
                for index, command in window
            }
            _, late = await asyncio.wait(sends, timeout=self._confirm_timeout)
            for send in late:
                send.cancel()
            for send, (index, command) in sends.items():
                failure = _no_confirm(command, self._confirm_timeout) if send in late else send.exception()
                if failure is None:
                    results[index] = command.message_id
                else:
                    results[index] = (
                        failure if isinstance(failure, Exception) else PublishFailed(repr(failure))
                    )
        finally:
            turns.release()

    async def _send(self, command: Command, lane: Lane, reply_to: str | None, *, timed: bool = True) -> None:
        routing_key = self._topology.routing_key(command.verb, lane)
        # aiormq matches a returned message to its confirm by message_id: two copies in flight on one
        # channel could credit one's return to the other and report an unroutable copy as confirmed.
        async with self._sending.hold(command.message_id):
            confirmed = publish_body_confirmed(
                self._channel,
                self._topology.commands_exchange,
                msgspec.json.encode(command),
                _properties(command, reply_to),
                routing_key,
            )
            try:
                if timed:
                    async with asyncio.timeout(self._confirm_timeout):
                        await confirmed
                else:  # the caller keeps one deadline for many sends
                    await confirmed
            except TimeoutError:
                raise _no_confirm(command, self._confirm_timeout) from None
            except Nacked:
                queue = self._topology.command_queue(command.verb, lane)
                raise QueueFull(
                    f"queue {queue!r} is full (RECALLS_COMMAND_QUEUE_MAX_LENGTH caps it): RabbitMQ refused "
                    f"{command.message_id}; publish it again with the same message_id once the workers "
                    "have caught up"
                ) from None
            except (AMQPError, ConnectionError, ChannelInvalidStateError) as exc:
                raise PublishFailed(
                    f"connection lost before {command.message_id} was confirmed ({exc!r}); "
                    "it may be queued: publish it again with the same message_id"
                ) from exc


def _no_confirm(command: Command, timeout: float | None) -> PublishFailed:
    return PublishFailed(
        f"no confirm for {command.message_id} within {timeout or 0:g} s; "
        "it may be queued: publish it again with the same message_id"
    )


def _properties(command: Command, reply_to: str | None) -> Basic.Properties:
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=command.message_id,
        correlation_id=command.correlation_id,
        timestamp=command.issued_at,
        message_type=command.verb,
        reply_to=reply_to,
    )


def checked_command(command: Command, *, lane: Lane, reply_to: str | None) -> Command:
    """What :meth:`Publisher.publish` sends for ``command``: it validated, once lane and reply_to pass.

    Every publisher's one check, the test double's (:mod:`recalls.producers.testing`) included.  Raises
    :class:`~recalls.InvalidCommand` or ``ValueError`` as :meth:`Publisher.publish` does.
    """
    _check_lane(lane)
    _check_reply_to(reply_to)
    return validate(command)


def checked_commands(
    commands: Iterable[Command], *, lane: Lane, reply_to: str | None, max_in_flight: int, validated: bool
) -> list[Command | InvalidCommand]:
    """What :meth:`Publisher.publish_many` sends: each command validated, or why it is not valid.

    Raises ``ValueError`` for a bad lane, reply_to or ``max_in_flight``, before any command is looked at.
    """
    _check_lane(lane)
    _check_reply_to(reply_to)
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    return list(commands) if validated else [validated_or_error(command) for command in commands]


def validated_or_error(command: Command) -> Command | InvalidCommand:
    """The validated command, or the error that says why it is not valid (for per-command results)."""
    try:
        return validate(command)
    except InvalidCommand as exc:
        return exc


def _check_reply_to(reply_to: str | None) -> None:
    if reply_to is not None and not is_own_reply_queue(reply_to):
        raise ValueError(
            "reply_to must be a server-named queue (amq.gen-...) or amq.rabbitmq.reply-to: "
            "workers send outcomes to no other queue"
        )


def _check_lane(lane: str) -> None:
    # A lane unknown to the topology names no queue: say so before anything is sent, not as unroutable.
    if lane not in get_args(Lane):
        lanes = ", ".join(repr(name) for name in get_args(Lane))
        raise ValueError(f"lane must be one of {lanes}, not {lane!r}")
