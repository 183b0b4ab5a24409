"""The event recorder: keeps the ledger, the batch jobs and the cache of
checks (what DVSA last answered for a VIN) up to date from the fleet's outcome events.

It consumes ``<prefix>.ledger`` (every event of ``<prefix>.events``) and acks an event only once both the
ledger and the batch journal have committed it; both are idempotent, so a redelivery after a crash
between the two is harmless.  Events are written in groups: whatever arrives within ``linger`` seconds
of the first goes into one transaction, ledger, batches and checks together, which keeps the store's
cost per event small (one commit per group, not three per event) at the fleet's full rate.  A database
error returns the group's events to the queue after a short pause (so an outage does not spin); an event
that cannot be decoded is logged and dropped, as it never will be.

Only the fleet's own broker users publish outcome events (:mod:`recalls.workers.senders`).  An event from
anyone else is dead-lettered ``untrusted_sender`` by the recorder itself, to ``<prefix>.dead`` where the
operator sees it: the ledger queue has no dead-letter exchange of its own, and giving it one would
change its arguments, which RabbitMQ refuses for a queue that exists.  A time in an event that lies in
the future is recorded as now: the ledger and the cache keep the newest event, and a time to come would
outrank every genuine one until it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from functools import partial

import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from recalls.shared.amqp import PublishFailed
from recalls.shared.contracts import OutcomeEvent, utc_now
from recalls.shared.metrics import WorkerMetrics
from recalls.shared.store.batches import Batches
from recalls.shared.store.checks import VinChecks
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.shared.topology import Topology
from recalls.workers.inflight import InFlight
from recalls.workers.reporting import Reporter
from recalls.workers.senders import UNTRUSTED_SENDER, Senders

log = logging.getLogger("recalls.worker.ledger")

_DECODER = msgspec.json.Decoder(OutcomeEvent)
_TIMES = ("issued_at", "first_seen_at", "completed_at")


class EventRecorder:
    """Records outcome events in the store between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        db: Database,
        topology: Topology,
        *,
        senders: Senders,
        reporter: Reporter,
        metrics: WorkerMetrics,
        prefetch: int,
        retry_pause: float = 1.0,
        linger: float = 0.1,
        after_ending: Callable[[], None] = lambda: None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._db = db
        self._senders = senders
        self._reporter = reporter  # dead-letters the events of untrusted senders
        self._metrics = metrics
        self._clock = clock
        self._ledger = Ledger(db)
        self._batches = Batches(db)
        self._checks = VinChecks(db)
        self._after_ending = after_ending  # a batch ended: its webhook is due
        self._topology = topology
        self._prefetch = prefetch
        self._retry_pause = retry_pause
        self._linger = linger
        self._waiting: list[tuple[OutcomeEvent, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._in_flight = InFlight()
        self._channel: AbstractChannel | None = None
        self._consumer: tuple[AbstractQueue, str] | None = None
        self._recorded = 0
        self._progress = asyncio.Condition()

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Consume the ledger queue (declared by :func:`recalls.shared.topology.declare`) on a channel of
        its own."""
        self._writer = asyncio.create_task(self._write_forever(), name="ledger-writer")
        self._channel = await connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        queue = await self._channel.get_queue(self._topology.ledger_queue)
        self._consumer = (queue, await queue.consume(self._in_flight.tracking(self.handle)))

    async def stop(self, grace: float) -> None:
        """Stop taking events, let those in hand finish (up to ``grace`` s), close the channel."""
        if self._consumer is not None:
            queue, tag = self._consumer
            await queue.cancel(tag)
        await self._in_flight.drain(grace)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        if not self._senders.is_fleet(message.user_id):
            await self._refuse(message)
            return
        try:
            event = _DECODER.decode(message.body)
        except msgspec.DecodeError as exc:
            log.error("undecodable outcome event dropped: %s", exc, extra={"message_id": message.message_id})
            await message.ack()
            return
        written = asyncio.get_running_loop().create_future()
        self._waiting.append((_clamped(event, self._clock()), written))
        self._arrived.set()
        try:
            await written
        except _NotWritten:
            await self._give_back(message)
            return
        with _channel_gone():
            await message.ack()
        async with self._progress:
            self._recorded += 1
            self._progress.notify_all()

    async def _refuse(self, message: AbstractIncomingMessage) -> None:
        """Dead-letter an event no fleet user sent; it changes nothing in the store."""
        reason = self._senders.refusal(message.user_id, "RECALLS_FLEET_USERS")
        try:
            await self._reporter.dead_letter(message, reason, {})
        except (PublishFailed, AMQPError, ChannelInvalidStateError):
            await self._give_back(message)
            return
        with _channel_gone():
            await message.ack()
        self._metrics.dead_lettered("event", UNTRUSTED_SENDER)
        log.warning(
            "dead-lettered an outcome event from an untrusted sender",
            extra={"message_id": message.message_id, "routing_key": message.routing_key, "reason": reason},
        )

    async def _give_back(self, message: AbstractIncomingMessage) -> None:
        await asyncio.sleep(self._retry_pause)  # an outage must not become a busy loop
        with _channel_gone():
            await message.nack(requeue=True)

    async def _write_forever(self) -> None:
        """Write what has arrived, a group at a time, and wake each event's handler with the result."""
        while True:
            await self._arrived.wait()
            await asyncio.sleep(self._linger)  # let the group fill: one transaction serves them all
            self._arrived.clear()
            group, self._waiting = self._waiting, []
            events = [event for event, _ in group]
            try:
                ended = await self._db.run(partial(self._record, events), write=True)
                failed = False
                if ended:
                    self._after_ending()
            except (SQLAlchemyError, OSError):
                log.exception("could not record %d outcome events; they go back to the queue", len(events))
                failed = True
            for _, written in group:
                if written.done():  # its handler gave up (stopping): the event is redelivered
                    continue
                if failed:
                    written.set_exception(_NotWritten())
                else:
                    written.set_result(None)

    def _record(self, events: list[OutcomeEvent], connection: Connection) -> bool:
        """Write ``events`` in one transaction; True if a batch ended."""
        self._ledger.apply_within(connection, events)
        ended = self._batches.record_within(connection, events)
        self._checks.remember_within(connection, events)
        return ended

    @property
    def recorded_count(self) -> int:
        """Events recorded since start."""
        return self._recorded

    async def recorded(self, count: int) -> None:
        """Return once ``count`` events have been recorded since start (for tests and demos)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._recorded >= count)


def _clamped(event: OutcomeEvent, now: dt.datetime) -> OutcomeEvent:
    """``event`` with each of its times that lies after ``now`` brought back to ``now``."""
    ahead = {name: now for name in _TIMES if (when := getattr(event, name)) is not None and when > now}
    return msgspec.structs.replace(event, **ahead) if ahead else event


def _channel_gone() -> contextlib.AbstractContextManager[None]:
    """An ack or nack whose channel has closed meanwhile: the broker has put the event back already."""
    return contextlib.suppress(ChannelInvalidStateError, AMQPError)


class _NotWritten(Exception):
    """The store refused a group of events (the cause is logged once, by the writer)."""
