"""What the dashboard reads from RabbitMQ: the workers' stats as they come, and the queue depths now and then.

The stats arrive on an exclusive, auto-delete queue bound to ``<prefix>.stats``, consumed without acks:
a figure lost is a second of one worker's counts, worth less than any bookkeeping.  Queue depths are
read by passive declares every few seconds by one task, whatever the number of open dashboards, so the
broker sees the same load for one viewer or fifty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from recalls.ops.dashboard.window import StatsWindow
from recalls.shared.queue_depths import QueueDepth, queue_depths
from recalls.shared.telemetry import declare_stats, decode_stats
from recalls.shared.topology import Topology

log = logging.getLogger("recalls.api.dashboard")

DEPTHS_EVERY = 3.0
_QUEUE_CAP = 10_000  # stats waiting for a stalled reader: older ones are dropped first


class StatsFeed:
    """Files every worker's stats into ``window`` from :meth:`start` until :meth:`stop`."""

    def __init__(self, topology: Topology, window: StatsWindow, *, clock: Callable[[], float] = time.time):
        self._topology = topology
        self._window = window
        self._clock = clock
        self._channel: AbstractChannel | None = None
        self._undecodable = 0

    async def start(self, connection: AbstractConnection) -> None:
        self._channel = await connection.channel(publisher_confirms=False)
        exchange = await declare_stats(self._channel, self._topology)
        queue = await self._channel.declare_queue(
            exclusive=True, auto_delete=True, arguments={"x-max-length": _QUEUE_CAP}
        )
        await queue.bind(exchange)
        await queue.consume(self._on_message, no_ack=True)

    async def stop(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            stats = decode_stats(message.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._undecodable += 1
            if self._undecodable == 1:  # once: a misconfigured sender would otherwise flood the log
                log.warning("stats message that is not a WorkerStats ignored (%s)", exc)
            return
        self._window.add(stats, self._clock())


class DepthPoller:
    """The depth of every fleet queue, read every ``every`` seconds by :meth:`run`."""

    def __init__(self, topology: Topology, *, every: float = DEPTHS_EVERY) -> None:
        self._topology = topology
        self._every = every
        self.depths: list[QueueDepth] = []
        self.read_at: float | None = None  # epoch seconds of the last good reading

    async def run(self, connection: AbstractConnection) -> None:
        """Read until cancelled; a failed reading is logged once per outage and keeps the last one."""
        failing = False
        while True:
            try:
                self.depths = await queue_depths(connection, self._topology)
                self.read_at = time.time()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poller must outlive any broker hiccup; it says so once
                if not failing:
                    log.warning("queue depths unreadable, keeping the last ones: %s", type(exc).__name__)
                failing = True
            await asyncio.sleep(self._every)
