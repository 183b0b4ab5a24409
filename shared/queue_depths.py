"""How many messages wait in each of the fleet's queues, read with passive declares (no management API).

Used by the workers' metrics and by the dashboard.  A passive declare of a missing queue closes the
channel it ran on, so each reading opens its own short-lived channel and reports such a queue as absent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import aiormq
from aio_pika.abc import AbstractConnection

from recalls.shared.contracts import VERBS
from recalls.shared.topology import LANES, Topology, tier_label


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    kind: str  # "command", "retry" or "dead"
    verb: str | None  # command queues only
    lane: str | None  # command queues only
    tier: str | None  # retry queues only ("1s", "2m", ...)
    messages: int  # ready, not yet delivered


def fleet_queues(topology: Topology) -> list[QueueDepth]:
    """Every queue whose depth matters to an operator, with zero depth."""
    queues = [
        QueueDepth(topology.command_queue(verb, lane), "command", verb, lane, None, 0)
        for verb in VERBS
        for lane in LANES
    ]
    for tier, seconds in enumerate(topology.retry_tiers):
        queues.append(QueueDepth(topology.retry_name(tier), "retry", None, None, tier_label(seconds), 0))
    queues.append(QueueDepth(topology.dead_queue, "dead", None, None, None, 0))
    return queues


async def queue_depths(connection: AbstractConnection, topology: Topology) -> list[QueueDepth]:
    """The depth of every queue of :func:`fleet_queues` that exists now."""
    found: list[QueueDepth] = []
    channel = await connection.channel(publisher_confirms=False)
    try:
        for queue in fleet_queues(topology):
            try:
                declared = await channel.declare_queue(queue.queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                channel = await connection.channel(publisher_confirms=False)
                continue
            found.append(replace(queue, messages=declared.declaration_result.message_count or 0))
    finally:
        await channel.close()
    return found
