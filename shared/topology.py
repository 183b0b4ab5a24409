"""Every exchange and queue of the fleet, named from one prefix and declared idempotently.

```
<p>.commands (direct) --verb-->            <p>.<verb>             quorum, live lane
                      --verb.bulk-->       <p>.<verb>.bulk        quorum, bulk lane (imports, syncs, batches)
                      --verb.background--> <p>.<verb>.background  quorum, background lane (sweeps)
<p>.retry.<tier> (fanout) -> <p>.retry.<tier>  quorum, message TTL = tier, dead-letters back to
                                               <p>.commands with the message's own routing key
<p>.dead (fanout)        -> <p>.dead           quorum, the dead-letter queue
<p>.events (topic)       recall.created|fixed|deleted|checked|failed
                  --#-->  <p>.ledger         quorum, every outcome: the ledger and the batch tracker
```
An administrator declares it with ``recalls topology`` (:func:`declare`).  The fleet's processes may run
as broker users without configure permission, so they only :func:`ensure` it: passive checks, and a
declaration of whatever is missing, which such a user is refused; then :class:`TopologyError` tells the
operator to run ``recalls topology``.  Each command queue holds at most ``command_queue_max_length``
messages and then refuses publishes, so no publisher can fill the broker until its memory alarm blocks
every other.  Every worker consumes every lane; the lanes share each verb's rate budget in the order of
:data:`LANES`: bulk calls take only the slots live calls leave, background calls only those live and
bulk calls leave (:mod:`recalls.shared.ratelimit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity, ChannelPreconditionFailed
from pamqp.common import FieldValue

from recalls.shared.contracts import VERBS, Lane, Verb

if TYPE_CHECKING:  # pydantic-settings is no import of the publisher library's
    from recalls.shared.settings import Settings

LANES: tuple[Lane, ...] = ("live", "bulk", "background")
# As RECALLS_PREFIX's default and rule in recalls.shared.settings (which may not import this module).
DEFAULT_PREFIX = "recalls"
PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_LANE_SUFFIXES: dict[str, Lane] = {lane: lane for lane in LANES if lane != "live"}
DEFAULT_RETRY_TIERS: tuple[float, ...] = (1, 5, 30, 120, 600, 3600, 21600)
DEFAULT_COMMAND_QUEUE_MAX_LENGTH = 1_000_000
# A queue that cannot accept a message must say so to the publisher rather than drop it.
_QUORUM: dict[str, FieldValue] = {"x-queue-type": "quorum", "x-overflow": "reject-publish"}
# A message redelivered this often has crashed workers; it goes to the dead-letter queue.
DELIVERY_LIMIT = 10

EVENT_KEYS: dict[Verb, str] = {
    "create": "recall.created",
    "fix": "recall.fixed",
    "delete": "recall.deleted",
    "get": "recall.checked",
}
FAILED_EVENT_KEY = "recall.failed"


class TopologyError(Exception):
    """The broker's exchanges and queues cannot serve as they are; the message says what to do."""


def tier_label(seconds: float) -> str:
    """1 -> '1s', 120 -> '2m', 3600 -> '1h': short, stable queue-name suffixes."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def routing_key(verb: Verb, lane: Lane = "live") -> str:
    """A command's routing key: the verb, then ``.<lane>`` for any lane but live ("get.background")."""
    return verb if lane == "live" else f"{verb}.{lane}"


def lane_of(key: str) -> Lane:
    """The lane a routing key of :func:`routing_key` names ("get.bulk" -> "bulk"); any other key is live."""
    _, dot, suffix = key.rpartition(".")
    return _LANE_SUFFIXES.get(suffix, "live") if dot else "live"


@dataclass(frozen=True)
class Topology:
    """The names derived from one prefix; pure data, so tests can build one per run."""

    prefix: str
    retry_tiers: Sequence[float] = DEFAULT_RETRY_TIERS
    command_queue_max_length: int = DEFAULT_COMMAND_QUEUE_MAX_LENGTH

    @property
    def commands_exchange(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def stats_exchange(self) -> str:
        """The workers' live figures (recalls.shared.telemetry); transient, declared by whoever uses it."""
        return f"{self.prefix}.stats"

    @property
    def ledger_queue(self) -> str:
        """Every outcome event, consumed by the workers' event recorder."""
        return f"{self.prefix}.ledger"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    def routing_key(self, verb: Verb, lane: Lane = "live") -> str:
        return routing_key(verb, lane)

    def command_queue(self, verb: Verb, lane: Lane = "live") -> str:
        return f"{self.prefix}.{self.routing_key(verb, lane)}"

    def retry_name(self, tier: int) -> str:
        """Exchange and queue of retry tier ``tier`` (0-based)."""
        return f"{self.prefix}.retry.{tier_label(self.retry_tiers[tier])}"


def declared_names(names: Topology) -> list[str]:
    """What :func:`recalls.shared.topology.declare` creates, one ``exchange|queue <name>`` line each."""
    command_queues = [names.command_queue(verb, lane) for verb in VERBS for lane in LANES]
    retries = [names.retry_name(tier) for tier in range(len(names.retry_tiers))]
    exchanges = [names.commands_exchange, names.events_exchange, names.dead_exchange, *retries]
    queues = [*command_queues, *retries, names.dead_queue, names.ledger_queue]
    return [f"exchange {name}" for name in exchanges] + [f"queue {name}" for name in queues]


def topology_of(settings: Settings) -> Topology:
    return Topology(settings.prefix, settings.retry_tiers, settings.command_queue_max_length)


@dataclass(frozen=True)
class _Exchange:
    name: str
    kind: aio_pika.ExchangeType


@dataclass(frozen=True)
class _Queue:
    name: str
    arguments: dict[str, FieldValue]
    exchange: str  # bound to it with routing_key (None: aio-pika binds with the queue's name)
    routing_key: str | None = None


def _exchanges(topology: Topology) -> list[_Exchange]:
    kind = aio_pika.ExchangeType
    retries = [_Exchange(topology.retry_name(tier), kind.FANOUT) for tier in range(len(topology.retry_tiers))]
    return [
        _Exchange(topology.commands_exchange, kind.DIRECT),
        _Exchange(topology.dead_exchange, kind.FANOUT),
        _Exchange(topology.events_exchange, kind.TOPIC),
        *retries,
    ]


def _queues(topology: Topology) -> list[_Queue]:
    commands = {
        **_QUORUM,
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": topology.dead_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-max-length": topology.command_queue_max_length,
    }
    queues = [
        _Queue(topology.dead_queue, _QUORUM, topology.dead_exchange),
        _Queue(topology.ledger_queue, _QUORUM, topology.events_exchange, "#"),
    ]
    for verb in VERBS:
        for lane in LANES:
            name, key = topology.command_queue(verb, lane), topology.routing_key(verb, lane)
            queues.append(_Queue(name, commands, topology.commands_exchange, key))
    for tier, seconds in enumerate(topology.retry_tiers):
        arguments: dict[str, FieldValue] = {
            **_QUORUM,
            "x-message-ttl": int(seconds * 1000),
            # No routing key override: the message goes back under its own verb (and lane) key.
            "x-dead-letter-exchange": topology.commands_exchange,
            "x-dead-letter-strategy": "at-least-once",
        }
        name = topology.retry_name(tier)
        queues.append(_Queue(name, arguments, name))
    return queues


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Create (or confirm) every exchange, queue and binding; safe to call any number of times.

    Needs configure permission.  Raises :class:`TopologyError` for a queue that exists with other
    arguments (one declared by an earlier version, or with another ``command_queue_max_length``).
    """
    await _create(channel, _exchanges(topology), _queues(topology))


async def ensure(connection: AbstractConnection, topology: Topology) -> None:
    """Check every exchange and queue passively and declare only those missing.

    Needs no permission while everything exists.  Raises :class:`TopologyError` when something is
    missing and this broker user may not declare it.
    """
    exchanges, queues = _exchanges(topology), _queues(topology)
    wanted = [("exchange", exchange.name) for exchange in exchanges] + [("queue", q.name) for q in queues]
    missing = await _missing(connection, wanted)
    if not missing:
        return
    lacking = [exchange for exchange in exchanges if ("exchange", exchange.name) in missing]
    recreated = {exchange.name for exchange in lacking}
    channel = await connection.channel()
    try:
        await _create(
            channel,
            lacking,
            [queue for queue in queues if ("queue", queue.name) in missing],
            rebind=[q for q in queues if ("queue", q.name) not in missing and q.exchange in recreated],
        )
    except ChannelAccessRefused:
        names = ", ".join(name for _, name in missing[:3]) + (" and more" if len(missing) > 3 else "")
        raise TopologyError(
            f"RabbitMQ holds no {names} and this broker user may not declare them: run `recalls topology` "
            f"once with RECALLS_PREFIX={topology.prefix} as a broker user that may configure (an "
            "administrator), then start this again"
        ) from None
    finally:
        if not channel.is_closed:
            await channel.close()


async def missing_exchanges(connection: AbstractConnection, names: Sequence[str]) -> list[str]:
    """Those of the exchanges ``names`` that do not exist, by passive declares (they need no permission).

    For clients that declare nothing and must know that what they publish to or bind to is there.
    """
    return [name for _, name in await _missing(connection, [("exchange", name) for name in names])]


async def _missing(connection: AbstractConnection, wanted: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Those of ``wanted`` (kind, name) that do not exist, by passive declares (they need no permission).

    A passive declare of something missing closes its channel: raw channels, so that aio-pika does not
    reopen it, and a new one after each miss.
    """
    missing: list[tuple[str, str]] = []
    probe: RawChannel | None = None
    try:
        for kind, name in wanted:
            if probe is None or probe.is_closed:
                probe = await _raw_channel(connection)
            try:
                if kind == "exchange":
                    await probe.exchange_declare(name, passive=True)
                else:
                    await probe.queue_declare(name, passive=True)
            except ChannelNotFoundEntity:
                missing.append((kind, name))
    finally:
        if probe is not None and not probe.is_closed:
            await probe.close()
    return missing


async def _raw_channel(connection: AbstractConnection) -> RawChannel:
    transport = connection.transport
    if transport is None:
        raise ConnectionError("broker connection down")
    return await transport.connection.channel(publisher_confirms=False)


async def _create(
    channel: AbstractChannel,
    exchanges: list[_Exchange],
    queues: list[_Queue],
    rebind: Sequence[_Queue] = (),
) -> None:
    """Declare ``exchanges``, then ``queues`` with their bindings; bind ``rebind``'s queues again."""
    for exchange in exchanges:
        await channel.declare_exchange(exchange.name, exchange.kind, durable=True)
    for queue in queues:
        try:
            declared = await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
        except ChannelPreconditionFailed as exc:
            raise _mismatch(queue.name, exc) from None
        await declared.bind(queue.exchange, routing_key=queue.routing_key)
    for queue in rebind:  # their exchange was just made again, without its bindings
        existing = await channel.get_queue(queue.name, ensure=False)
        await existing.bind(queue.exchange, routing_key=queue.routing_key)


def _mismatch(queue: str, exc: ChannelPreconditionFailed) -> TopologyError:
    return TopologyError(
        f"queue {queue!r} exists with other arguments than this version declares ({exc.args[-1]}). "
        "RabbitMQ cannot change the arguments of a queue: once it is empty (stop its publishers, let the "
        f"workers drain it), delete it (rabbitmqctl delete_queue {queue}) and run `recalls topology` "
        "again. Until then the fleet goes on using the queue as it is"
    )


async def delete(channel: AbstractChannel, topology: Topology) -> None:
    """Remove every queue and exchange of ``topology``, messages included (demos and tests)."""
    retry_names = [topology.retry_name(tier) for tier in range(len(topology.retry_tiers))]
    queues = [topology.command_queue(verb, lane) for verb in VERBS for lane in LANES]
    for name in [*queues, *retry_names, topology.dead_queue, topology.ledger_queue]:
        await channel.queue_delete(name)
    exchanges = [
        topology.commands_exchange,
        topology.events_exchange,
        topology.dead_exchange,
        topology.stats_exchange,
    ]
    for name in [*exchanges, *retry_names]:
        await channel.exchange_delete(name)
