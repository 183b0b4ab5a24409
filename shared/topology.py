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
Producers and workers both call :func:`declare`, so whichever starts first creates the topology.
Every worker consumes every lane; the lanes share each verb's rate budget in the order of
:data:`LANES`: bulk calls take only the slots live calls leave, background calls only those live and
bulk calls leave (:mod:`shared.ratelimit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from pamqp.common import FieldValue

from shared.contracts import VERBS, Lane, Verb

LANES: tuple[Lane, ...] = ("live", "bulk", "background")
_LANE_SUFFIXES: dict[str, Lane] = {lane: lane for lane in LANES if lane != "live"}
DEFAULT_RETRY_TIERS: tuple[float, ...] = (1, 5, 30, 120, 600, 3600, 21600)
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

    @property
    def commands_exchange(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def stats_exchange(self) -> str:
        """The workers' live figures (shared.telemetry); transient, declared by whoever uses it."""
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


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Create (or confirm) every exchange, queue and binding; safe to call any number of times."""
    durable = aio_pika.ExchangeType
    commands = await channel.declare_exchange(topology.commands_exchange, durable.DIRECT, durable=True)
    dead = await channel.declare_exchange(topology.dead_exchange, durable.FANOUT, durable=True)
    events = await channel.declare_exchange(topology.events_exchange, durable.TOPIC, durable=True)

    dead_queue = await channel.declare_queue(topology.dead_queue, durable=True, arguments=_QUORUM)
    await dead_queue.bind(dead)
    ledger_queue = await channel.declare_queue(topology.ledger_queue, durable=True, arguments=_QUORUM)
    await ledger_queue.bind(events, routing_key="#")
    for verb in VERBS:
        for lane in LANES:
            await _declare_command_queue(channel, commands, topology, verb, lane)
    for tier, seconds in enumerate(topology.retry_tiers):
        await _declare_retry_tier(channel, topology, tier, seconds)


async def _declare_command_queue(
    channel: AbstractChannel,
    commands: AbstractExchange,
    topology: Topology,
    verb: Verb,
    lane: Lane,
) -> None:
    arguments: dict[str, FieldValue] = {
        **_QUORUM,
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": topology.dead_exchange,
        "x-dead-letter-strategy": "at-least-once",
    }
    queue = await channel.declare_queue(topology.command_queue(verb, lane), durable=True, arguments=arguments)
    await queue.bind(commands, routing_key=topology.routing_key(verb, lane))


async def _declare_retry_tier(
    channel: AbstractChannel, topology: Topology, tier: int, seconds: float
) -> None:
    name = topology.retry_name(tier)
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
    arguments: dict[str, FieldValue] = {
        **_QUORUM,
        "x-message-ttl": int(seconds * 1000),
        # No routing key override: the message goes back under its own verb (and lane) key.
        "x-dead-letter-exchange": topology.commands_exchange,
        "x-dead-letter-strategy": "at-least-once",
    }
    queue = await channel.declare_queue(name, durable=True, arguments=arguments)
    await queue.bind(exchange)


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
