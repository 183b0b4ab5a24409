"""The dead-letter queue's depth, read straight from RabbitMQ, and waiting for it to reach a count."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel

from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from tests.support.polling import poll_until


async def dead_count(channel: AbstractChannel, settings: Settings) -> int:
    # Straight to the AMQP channel: aio-pika's robust channel answers a repeated declare from its cache.
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(Topology(settings.prefix).dead_queue, passive=True)
    return declared.message_count or 0


async def wait_for_dead(channel: AbstractChannel, settings: Settings, count: int) -> None:
    """Until the dead-letter queue holds at least ``count`` messages (30 s at most)."""
    await poll_until(
        lambda: dead_count(channel, settings), lambda held: held >= count, timeout=30, every=0.05
    )
