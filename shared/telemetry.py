"""The fleet's live figures: what every worker tells the dashboard once a second.

Each worker publishes a :class:`WorkerStats` to the ``<prefix>.stats`` fanout exchange every
second: transient and unrouted when nobody listens, because figures a few seconds old are worth
nothing.  A reader (the dashboard of ``recalls api``) binds its own exclusive, auto-delete queue.
Counts cover one interval, not the worker's life, so a restarted worker needs no reconciliation and
a reader adds up what arrives.
"""

from __future__ import annotations

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractExchange

from recalls.shared.topology import Topology

# Tallies by label, e.g. {"create": {"201": 24, "429": 0}}; labels are bounded sets
# (see recalls.shared.metrics).
Tally = dict[str, int]


class WorkerStats(msgspec.Struct, frozen=True, kw_only=True):
    """One worker's figures for the ``interval`` seconds that ended at ``sent_at`` (epoch seconds)."""

    worker: str  # host:pid, stable for the process's life
    sent_at: float
    interval: float
    calls: dict[str, Tally] = msgspec.field(default_factory=dict)  # verb -> DVSA status or transport error
    outcomes: dict[str, Tally] = msgspec.field(default_factory=dict)  # verb -> command result
    retries: Tally = msgspec.field(default_factory=dict)  # retry tier label ("1s", "2m") -> count
    dead_letters: Tally = msgspec.field(default_factory=dict)  # reason kind -> count
    in_flight: int = 0
    token_expires_at: float | None = None  # the token this worker last used
    token_refreshes: int = 0  # fetches from the token endpoint made by this worker


async def declare_stats(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """The stats exchange (not durable: nothing in it is worth keeping across a broker restart)."""
    return await channel.declare_exchange(
        topology.stats_exchange, aio_pika.ExchangeType.FANOUT, durable=False
    )


def encode_stats(stats: WorkerStats) -> bytes:
    return msgspec.json.encode(stats)


def decode_stats(body: bytes) -> WorkerStats:
    """Raises ``msgspec.ValidationError`` or ``msgspec.DecodeError`` on a body that is not one."""
    return msgspec.json.decode(body, type=WorkerStats)
