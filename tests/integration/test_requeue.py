"""A delivery whose replacement the broker would not take goes back to its queue calmly, and is not lost.

The dead-letter exchange is deleted under a running worker, so the dead letter of an invalid command
cannot be published: the broker closes the worker's publishing channel, which reopens by itself, and
the worker declares again what is missing.  Given back at once, the delivery would come straight back to a
channel still reopening and fail again and again, spending the queue's delivery limit in moments
(RabbitMQ would then dead-letter it by its own rules).  It must instead wait for the channel.
"""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from recalls.ops.dead_letters import DeadLetterQueue
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.workers.runtime import Worker
from tests.integration.conftest import publish_raw
from tests.support.dead_letters import wait_for_dead
from tests.support.logged import watching

pytestmark = pytest.mark.integration


async def test_a_dead_letter_that_cannot_be_published_waits_for_its_exchange(
    settings: Settings, broker: AbstractRobustConnection, channel: AbstractChannel, worker: Worker
) -> None:
    topology = Topology(settings.prefix, settings.retry_tiers)
    underlay = await channel.get_underlay_channel()
    await underlay.exchange_delete(topology.dead_exchange)

    with watching("recalls.worker", "requeueing") as requeued:
        await publish_raw(channel, settings, b"{not json", "get", message_id="homeless-1")
        await wait_for_dead(channel, settings, 1)
    [letter] = await DeadLetterQueue(broker, topology, idle_timeout=0.5).list()
    assert (letter.message_id, letter.verb) == ("homeless-1", "get")
    assert letter.reason.startswith("invalid command:")
    assert requeued.count == 1  # one failure, one requeue: it waited for the channel to be back
