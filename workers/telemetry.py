"""Publishes this worker's live figures (``recalls.shared.telemetry.WorkerStats``) once a second.

The dashboard of ``recalls api`` adds up what every worker sends.  A lost or late message costs one
second of one worker's figures and nothing else, so publishing is fire-and-forget on a channel of its
own, and a broker hiccup is logged once and retried at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from recalls.shared.metrics import WorkerMetrics
from recalls.shared.telemetry import WorkerStats, declare_stats, encode_stats
from recalls.shared.topology import Topology

log = logging.getLogger("recalls.worker.telemetry")
Clock = Callable[[], float]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def stats_of(
    metrics: WorkerMetrics, *, worker: str, now: float, interval: float, in_flight: int
) -> WorkerStats:
    """The figures of the interval that ends now; starts the next one."""
    taken = metrics.take_interval()
    return WorkerStats(
        worker=worker,
        sent_at=now,
        interval=interval,
        calls={verb: dict(tally) for verb, tally in taken.calls.items()},
        outcomes={verb: dict(tally) for verb, tally in taken.outcomes.items()},
        retries=dict(taken.retries),
        dead_letters=dict(taken.dead_letters),
        in_flight=in_flight,
        token_expires_at=metrics.token_expires_at,
        token_refreshes=taken.token_refreshes,
    )


async def publish_stats_forever(
    connection: AbstractRobustConnection,
    topology: Topology,
    metrics: WorkerMetrics,
    in_flight: Callable[[], int],
    *,
    every: float = 1.0,
    clock: Clock = time.time,
) -> None:
    """Publish one :class:`WorkerStats` per ``every`` seconds until cancelled."""
    channel = await connection.channel(publisher_confirms=False)
    exchange = await declare_stats(channel, topology)
    name, last, failing = worker_name(), clock(), False
    try:
        while True:
            await asyncio.sleep(every)  # a cadence, not a wait for an event
            now = clock()
            stats = stats_of(metrics, worker=name, now=now, interval=now - last, in_flight=in_flight())
            last = now
            try:
                # Not mandatory: with no dashboard listening the figures are meant to vanish.
                await exchange.publish(aio_pika.Message(encode_stats(stats)), routing_key="", mandatory=False)
                failing = False
            except Exception as exc:  # the figures are worth less than the worker's calm
                if not failing:
                    log.warning("could not publish live stats", extra={"error": type(exc).__name__})
                failing = True
    finally:
        await channel.close()
