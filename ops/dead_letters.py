"""The dead-letter queue read, replayed and purged without losing what stays in it.

Reading a queue without taking its messages is not something AMQP offers. A ``basic.get`` followed by
a reject with requeue would hand each message back one at a time, so the next get could return it
again. Instead one pass consumes the queue on a channel of its own with manual acks and a prefetch as
large as the queue was at the start, collects what arrives (until that many messages have come, or
none comes for a short idle time), acts on the messages chosen (replay: publish with a confirm, then
ack; purge: ack), and closes the channel: RabbitMQ returns every message not acked to the queue.

Each pass counts one delivery of every message it returns (a quorum queue records it in the
``x-delivery-count`` header). ``<prefix>.dead`` has no ``x-delivery-limit`` (see
:mod:`recalls.shared.topology`), so that count never drops or dead-letters a message; it only shows how often
the queue has been read. At most 65,535 messages (AMQP's largest prefetch) are seen in one pass.

A dead letter published by a worker carries its history in headers (:mod:`recalls.workers.attempts`) plus
``x-reason``, ``x-routing-key`` (the verb, then ``.bulk`` or ``.background`` for those lanes) and
``x-dead-at``; a message dead-lettered by RabbitMQ itself (a command queue's delivery limit) carries
``x-death`` instead, and RabbitMQ's account wins over any ``x-reason`` the sender put on it.
Times in headers are whole seconds (a Python float would travel as a 32-bit float, about 128 s
coarse); letters dead-lettered before that change carry such floats, exact only to about two minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from recalls.shared.amqp import PublishFailed, publish_confirmed
from recalls.shared.contracts import VERBS, Lane
from recalls.shared.topology import Topology, lane_of

MAX_PREFETCH = 65_535
IDLE_TIMEOUT = 1.0
# Headers that record a command's past attempts and its death; a replay starts without them.
_ATTEMPT_HEADERS = frozenset(
    {"x-attempts", "x-first-seen", "x-history", "x-last-error", "x-reason", "x-routing-key", "x-dead-at"}
)


# Settles one chosen message; returns None when done, or why it was left in the queue.
Action = Callable[[AbstractChannel, "DeadLetter", AbstractIncomingMessage], Awaitable[str | None]]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _plain(value: object) -> object:
    """A header value as JSON can hold it (AMQP tables may carry bytes, datetimes, nested tables)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as the operator needs to see it."""

    message_id: str
    routing_key: str  # the original one: "create", "fix.bulk", "get.background", ...; "" when unknown
    reason: str
    attempts: int
    first_seen: float | None
    dead_at: float | None
    last_error: str
    delivery_count: int
    headers: dict[str, object]
    body: bytes = field(repr=False)
    content_type: str

    @property
    def verb(self) -> str:
        return self.routing_key.split(".", 1)[0]

    @property
    def lane(self) -> Lane:
        return lane_of(self.routing_key)

    def age(self, now: float) -> float | None:
        return None if self.dead_at is None else max(0.0, now - self.dead_at)

    def pretty_body(self, limit: int = 20_000) -> str:
        """The body as indented JSON when it is JSON, else as text (bytes that are not UTF-8 escaped)."""
        try:
            text = json.dumps(json.loads(self.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = self.body.decode("utf-8", "backslashreplace")
        return text if len(text) <= limit else f"{text[:limit]}… ({len(self.body)} bytes in all)"

    def summary(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "verb": self.verb,
            "lane": self.lane,
            "routing_key": self.routing_key,
            "reason": self.reason,
            "attempts": self.attempts,
            "first_seen": self.first_seen,
            "dead_at": self.dead_at,
            "last_error": self.last_error,
            "delivery_count": self.delivery_count,
        }

    def details(self) -> dict[str, object]:
        body: object
        try:
            body = json.loads(self.body)
        except ValueError:
            body = self.body.decode("utf-8", "backslashreplace")
        return {**self.summary(), "content_type": self.content_type, "headers": self.headers, "body": body}

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        headers = dict(message.headers or {})
        deaths = headers.get("x-death")
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        # Retry tiers expire messages back to their queues; any other death put it here, and then the
        # x- headers are the sender's, not a worker's: RabbitMQ's account of the death wins.
        by_broker = bool(death) and _text(death.get("reason")) != "expired"
        routing_key = "" if by_broker else _text(headers.get("x-routing-key"))
        if not routing_key:
            keys = death.get("routing-keys")
            routing_key = _text(keys[0]) if isinstance(keys, list) and keys else ""
        reason = "" if by_broker else _text(headers.get("x-reason"))
        if not reason and death:
            reason = (
                f"dead-lettered by RabbitMQ from {_text(death.get('queue'))}: {_text(death.get('reason'))}"
            )
        attempts = headers.get("x-attempts")
        dead_at = None if by_broker else _number(headers.get("x-dead-at"))
        if dead_at is None and death.get("time") is not None:
            with contextlib.suppress(AttributeError, TypeError):
                dead_at = death["time"].timestamp()  # type: ignore[union-attr]
        delivery_count = headers.get("x-delivery-count")
        return cls(
            message_id=message.message_id or "",
            routing_key=routing_key,
            reason=reason,
            attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
            first_seen=_number(headers.get("x-first-seen")),
            dead_at=dead_at,
            last_error=_text(headers.get("x-last-error")),
            delivery_count=delivery_count if isinstance(delivery_count, int) else 0,
            headers={str(k): _plain(v) for k, v in headers.items()},
            body=message.body,
            content_type=message.content_type or "",
        )


@dataclass(frozen=True)
class Filter:
    """Which dead letters an operation concerns; every criterion given must hold."""

    verb: str | None = None
    reason: str | None = None  # a substring, case-insensitive
    older_than: float | None = None  # seconds since it was dead-lettered
    newer_than: float | None = None
    message_id: str | None = None

    def matches(self, letter: DeadLetter, now: float) -> bool:
        age = letter.age(now)
        return (
            (self.verb is None or letter.verb == self.verb)
            and (self.reason is None or self.reason.lower() in letter.reason.lower())
            and (self.older_than is None or (age is not None and age >= self.older_than))
            and (self.newer_than is None or (age is not None and age <= self.newer_than))
            and (self.message_id is None or letter.message_id == self.message_id)
        )


@dataclass
class Replayed:
    replayed: list[DeadLetter] = field(default_factory=list)
    # Left in the dead-letter queue, each with why.
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)


def replay_headers(headers: dict[str, object]) -> dict[str, object]:
    """The headers of a replayed command: no attempt history, no death, so it starts as a first attempt.

    ``x-maybe-applied`` is kept when set: an earlier attempt may have reached DVSA, and the worker then
    reads a 404 on a delete as "already deleted" rather than a failure.
    """
    kept = {k: v for k, v in headers.items() if not k.startswith("x-") or k == "x-maybe-applied"}
    if not kept.get("x-maybe-applied"):
        kept.pop("x-maybe-applied", None)
    return kept


class DeadLetterQueue:
    """``<prefix>.dead`` of one topology, read in passes on a connection the caller owns."""

    def __init__(
        self, connection: AbstractConnection, topology: Topology, *, idle_timeout: float = IDLE_TIMEOUT
    ):
        self._connection = connection
        self._topology = topology
        self._idle_timeout = idle_timeout

    async def list(self, selection: Filter = Filter()) -> list[DeadLetter]:
        return [letter for letter, _ in await self._pass(selection, None)]

    async def purge(self, selection: Filter = Filter()) -> int:
        async def drop(
            _: AbstractChannel, letter: DeadLetter, message: AbstractIncomingMessage
        ) -> str | None:
            await message.ack()
            return None

        return len(await self._pass(selection, drop))

    async def replay(self, selection: Filter = Filter()) -> Replayed:
        """Republish each chosen letter to the commands exchange, then remove it once confirmed."""
        result = Replayed()
        commands = self._topology.commands_exchange

        async def republish(
            channel: AbstractChannel, letter: DeadLetter, message: AbstractIncomingMessage
        ) -> str | None:
            if letter.verb not in VERBS:
                return f"no original verb routing key ({letter.routing_key or 'none'!r})"
            exchange = await channel.get_exchange(commands, ensure=False)
            command = aio_pika.Message(
                message.body,
                headers=replay_headers(dict(message.headers or {})),  # type: ignore[arg-type]
                content_type=message.content_type or "application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                reply_to=message.reply_to,
                type=message.type,
                timestamp=message.timestamp,
            )
            try:
                await publish_confirmed(exchange, command, letter.routing_key)
            except PublishFailed as exc:
                return str(exc)
            await message.ack()
            return None

        for letter, skipped in await self._pass(selection, republish):
            if skipped is None:
                result.replayed.append(letter)
            else:
                result.skipped.append((letter, skipped))
        return result

    async def _pass(self, selection: Filter, act: Action | None) -> Sequence[tuple[DeadLetter, str | None]]:
        """One read of the queue; ``act`` settles each chosen message (and says why not, if it did not)."""
        chosen: list[tuple[DeadLetter, str | None]] = []
        messages: list[AbstractIncomingMessage] = []
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            present = await self._ready(channel)
            if present == 0:
                return []
            await channel.set_qos(prefetch_count=min(present, MAX_PREFETCH))
            arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            queue = await channel.get_queue(self._topology.dead_queue, ensure=False)
            tag = await queue.consume(arrived.put, no_ack=False)
            try:
                while len(messages) < min(present, MAX_PREFETCH):
                    try:
                        messages.append(await asyncio.wait_for(arrived.get(), self._idle_timeout))
                    except TimeoutError:
                        break
            finally:
                await queue.cancel(tag)
            now = time.time()
            for message in messages:
                letter = DeadLetter.of(message)
                if selection.matches(letter, now):
                    chosen.append((letter, None if act is None else await act(channel, letter, message)))
        finally:
            # Whatever was not acked goes back to the queue.
            await channel.close()
        settled = sum(1 for _, why in chosen if act is not None and why is None)
        await self._returned(len(messages) - settled)
        return chosen

    async def _ready(self, channel: AbstractChannel) -> int:
        # Straight to the AMQP channel: aio-pika's robust channel answers a repeated declare from its cache.
        underlay = await channel.get_underlay_channel()
        declared = await underlay.queue_declare(self._topology.dead_queue, passive=True)
        return declared.message_count or 0

    async def _returned(self, count: int) -> None:
        """Wait until the queue holds ``count`` messages again (for at most five seconds).

        The broker answers the channel's close before the quorum queue has taken its messages back;
        without this wait, a pass that follows at once (the next command) could find them missing.
        """
        if count == 0:
            return
        channel = await self._connection.channel()
        try:
            for _ in range(250):
                if await self._ready(channel) >= count:
                    return
                await asyncio.sleep(0.02)
        finally:
            await channel.close()
