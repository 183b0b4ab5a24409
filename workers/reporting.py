"""Where a handled message goes next: retry tier, dead-letter queue, events exchange, caller's reply_to.

Every publish here is confirmed by the broker before the handler acks the original delivery, so a
crash between the two can duplicate a message but never lose one.  A reply_to is honoured only when it
names a queue its sender owns (:func:`recalls.shared.amqp.is_own_reply_queue`): otherwise anyone who may
publish a command could have outcomes delivered into any queue, another deployment's included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustChannel
from aiormq.exceptions import AMQPError
from pamqp.commands import Basic

from recalls.shared.amqp import is_own_reply_queue, publish_body_confirmed, publish_confirmed
from recalls.shared.contracts import OutcomeEvent
from recalls.shared.topology import EVENT_KEYS, FAILED_EVENT_KEY, Topology, TopologyError

log = logging.getLogger("recalls.worker")


class Reporter:
    """Publishes the replacements of a delivery on a confirm channel."""

    def __init__(
        self,
        channel: AbstractChannel,
        topology: Topology,
        exchanges: Mapping[str, AbstractExchange],
        mend: Callable[[], Awaitable[None]],
    ) -> None:
        """``mend`` declares again what is missing of the topology
        (:func:`recalls.shared.topology.ensure`)."""
        self._channel = channel
        self._topology = topology
        self._exchanges = exchanges
        self._mend = mend

    @classmethod
    async def open(
        cls, channel: AbstractChannel, topology: Topology, mend: Callable[[], Awaitable[None]]
    ) -> Reporter:
        names = [topology.events_exchange, topology.dead_exchange]
        names += [topology.retry_name(tier) for tier in range(len(topology.retry_tiers))]
        exchanges = {name: await channel.get_exchange(name, ensure=False) for name in names}
        return cls(channel, topology, exchanges, mend)

    async def ready(self) -> None:
        """Wait for the channel to be open, then for what a publish needs to be there again.

        A robust channel reopens by itself after a reconnect, but declares nothing: an exchange deleted
        under a running worker is declared again here, or, if this broker user may not, the error says
        to run ``recalls topology``.
        """
        if isinstance(self._channel, AbstractRobustChannel):
            await self._channel.ready()
        try:
            await self._mend()
        except TopologyError as exc:
            log.error("cannot publish what a command needs: %s", exc)
        except (AMQPError, ConnectionError) as exc:  # the connection went again: the next failure retries
            log.warning("could not check the topology", extra={"error": type(exc).__name__})

    async def retry(self, original: AbstractIncomingMessage, tier: int, headers: dict[str, object]) -> None:
        exchange = self._exchanges[self._topology.retry_name(tier)]
        await publish_confirmed(exchange, _copy(original, headers), original.routing_key or "")

    async def dead_letter(
        self, original: AbstractIncomingMessage, reason: str, headers: dict[str, object]
    ) -> None:
        headers = {
            **headers,
            "x-reason": reason[:1000],
            "x-routing-key": original.routing_key or "",
            "x-dead-at": round(time.time()),  # whole seconds: a float header travels as 32 bits
        }
        await publish_confirmed(self._exchanges[self._topology.dead_exchange], _copy(original, headers), "")

    async def outcome(self, event: OutcomeEvent, reply_to: str | None) -> None:
        body = msgspec.json.encode(event)
        key = FAILED_EVENT_KEY if event.result == "failed" else EVENT_KEYS[event.verb]
        properties = Basic.Properties(
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_id=event.message_id,
            correlation_id=event.correlation_id,
            message_type=key,
        )
        # Nobody may be subscribed yet; an event with no queue is not an error.
        events = self._topology.events_exchange
        await publish_body_confirmed(self._channel, events, body, properties, key, mandatory=False)
        if not reply_to:
            return
        if not is_own_reply_queue(reply_to):
            log.warning(
                "reply_to is no queue of the sender's own (amq.gen-... or amq.rabbitmq.reply-to): "
                "the outcome went to the events exchange only",
                extra={"message_id": event.message_id, "reply_to": reply_to[:255]},
            )
            return
        await publish_body_confirmed(self._channel, "", body, properties, reply_to, mandatory=False)


def _copy(original: AbstractIncomingMessage, headers: dict[str, object]) -> aio_pika.Message:
    return aio_pika.Message(
        original.body,
        headers=headers,  # type: ignore[arg-type]
        content_type=original.content_type or "application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=original.message_id,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        type=original.type,
        timestamp=original.timestamp,
    )
