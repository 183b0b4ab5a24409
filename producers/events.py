"""Following what became of the commands: the fleet's outcome events, from a queue of the caller's own.

Every command the fleet finishes is reported as an :class:`~recalls.OutcomeEvent` on the topic
exchange ``<prefix>.events``, with the routing key ``recall.created``, ``recall.fixed``,
``recall.deleted``, ``recall.checked`` (applied or already applied) or ``recall.failed`` (failed for
good).  :func:`events` reads them for another system::

    async for event in events(config, queue="orders.recall-outcomes", routing_keys=["recall.failed"]):
        await mark_failed(event.message_id, event.reason)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Collection, Sequence

import msgspec
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, ChannelPreconditionFailed

from recalls.producers import broker
from recalls.producers.config import PublisherConfig
from recalls.shared import amqp
from recalls.shared.contracts import OutcomeEvent, decode_event
from recalls.shared.topology import TopologyError, ensure

log = logging.getLogger("recalls.events")
DEFAULT_PREFETCH = 32


async def events(
    config: PublisherConfig,
    *,
    queue: str,
    routing_keys: Sequence[str] = ("#",),
    senders: Collection[str] | None = None,
    prefetch: int = DEFAULT_PREFETCH,
) -> AsyncGenerator[OutcomeEvent, None]:
    """The outcome events of ``<prefix>.events`` that match ``routing_keys``, through ``queue``, forever.

    ``queue`` is the caller's own: a durable queue declared here (it outlives the process, so events
    published while the caller is down wait in it) and bound to ``<prefix>.events`` with each of
    ``routing_keys`` (default ``#``: every event; ``["recall.failed"]``: failures only).  Bindings made
    by an earlier run with other keys stay until removed on the broker.  Names in the fleet's own
    namespace (``<prefix>.``) and ``amq.`` are refused with ``ValueError``: consuming the fleet's queues
    would take their events from the fleet.

    Delivery is at least once.  An event is acknowledged when the loop asks for the next one, so an
    exception in the loop's body, or a crash, leaves it unacknowledged and it is delivered again;
    leaving the loop with ``break`` does the same with the last event, so a body that breaks should be
    done with it by then.  Close the generator promptly (``contextlib.aclosing``) to release its
    connection when leaving early.

    A message that is no OutcomeEvent (or, with ``senders``, was published by a broker user not among
    them, by its RabbitMQ-checked ``user_id``) is never yielded: it is logged as a warning on logger
    ``recalls.events`` and rejected without requeueing, which dead-letters it where the caller's queue
    has a dead-letter exchange (a policy of the caller's) and drops it otherwise.

    Raises :class:`~recalls.BrokerUnreachable`, and :class:`~recalls.TopologyError`
    when ``<prefix>.events`` is missing (``config.declare=True`` declares the fleet's topology first)
    or ``queue`` exists with other arguments.
    """
    _check(config, queue, routing_keys, prefetch)
    topology = config.topology
    connection = await amqp.connect(config.amqp_url, name=config.name, connect_timeout=config.connect_timeout)
    async with connection:
        if config.declare:
            await ensure(connection, topology)
        else:
            await broker.require_exchange(connection, topology, topology.events_exchange)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        try:
            declared = await channel.declare_queue(queue, durable=True)
        except ChannelPreconditionFailed as exc:
            raise TopologyError(
                f"queue {queue!r} exists with other arguments than a durable queue of no arguments "
                f"({exc.args[-1]}): name another queue, or delete this one once it is empty"
            ) from None
        for key in routing_keys:
            await declared.bind(topology.events_exchange, routing_key=key)
        log.info(
            "following outcome events",
            extra={"queue": queue, "exchange": topology.events_exchange, "routing_keys": list(routing_keys)},
        )
        async with declared.iterator() as messages:
            async for message in messages:
                event = await _event(message, senders)
                if event is None:
                    continue
                yield event
                await _settle(message, ack=True)


def _check(config: PublisherConfig, queue: str, routing_keys: Sequence[str], prefetch: int) -> None:
    fleet = f"{config.prefix}."
    if not queue or queue.startswith((fleet, "amq.")):
        raise ValueError(
            f"queue must be a name of the caller's own, not empty, {fleet}... (the fleet's) or amq....: "
            f"name it after the application, such as 'orders.recall-outcomes', not {queue!r}"
        )
    if isinstance(routing_keys, str) or not routing_keys or not all(routing_keys):
        raise ValueError("routing_keys must be a list of one or more keys, such as ['recall.failed']")
    if prefetch < 1:
        raise ValueError("prefetch must be at least 1")


async def _event(message: AbstractIncomingMessage, senders: Collection[str] | None) -> OutcomeEvent | None:
    """The message's event, or None once a message that is not one has been logged and rejected."""
    if senders is not None and message.user_id not in senders:
        reason = f"sent by {message.user_id or 'an unnamed user'!r}, not one of the senders given"
    else:
        try:
            return decode_event(message.body)
        except msgspec.DecodeError as exc:
            reason = f"not an outcome event: {exc}"
    log.warning(
        "rejected a message on the events queue: %s",
        reason,
        extra={"message_id": message.message_id, "routing_key": message.routing_key},
    )
    await _settle(message, ack=False)
    return None


async def _settle(message: AbstractIncomingMessage, *, ack: bool) -> None:
    """Acknowledge ``message``, or reject it without requeueing."""
    try:
        await (message.ack() if ack else message.reject(requeue=False))
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        # The channel it came on is gone (a reconnect): the broker delivers it again.
        log.info(
            "could not settle a message of the events queue; it will come again",
            extra={"message_id": message.message_id, "error": type(exc).__name__},
        )
