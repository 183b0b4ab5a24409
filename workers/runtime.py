"""The worker process: consume every verb's queues, hand deliveries to the handler, stop gracefully.

Before it consumes, a worker waits for its services (:mod:`recalls.workers.patience`) and claims its prefix's
rate budget (:mod:`recalls.workers.budget`); a delivery goes on to the handler only while that claim holds.

One connection, one consuming channel (prefetch bounds the unacked deliveries per queue, and so the
concurrency) and one confirm channel for everything the handler publishes.  Alongside, the event
recorder keeps the ledger and the batch jobs from the outcome events, in the store the worker opens
(and migrates) at start.  On stop the consumers are cancelled first, in-flight commands get
``shutdown_grace`` seconds to finish, then the recorder stops; whatever is still unacked is returned
to its queue by the broker when the channel closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial

import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from recalls.shared.contracts import VERBS
from recalls.shared.dvsa.client import DvsaClient
from recalls.shared.dvsa.fleet_tokens import RedisTokenCache
from recalls.shared.dvsa.token_hold import TokenHold
from recalls.shared.dvsa.tokens import TokenCache, TokenSource
from recalls.shared.dvsa.transport import pooled_transport
from recalls.shared.fleet_limiter import RedisLimiter
from recalls.shared.metrics import WorkerMetrics
from recalls.shared.ratelimit import RateLimiter, SpacingLimiter
from recalls.shared.redis_client import redis_client
from recalls.shared.redis_hold import RedisHold
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.shared.topology import LANES, ensure, topology_of
from recalls.workers.budget import BudgetClaim, Refused
from recalls.workers.doubts import Doubts
from recalls.workers.handler import Handler
from recalls.workers.inflight import Handle, InFlight
from recalls.workers.ledger import EventRecorder
from recalls.workers.ops_http import Check, OpsEndpoints, serving, watch_queue_depths
from recalls.workers.patience import Patience, Stopped, broker_answering, redis_answering, store_answering
from recalls.workers.reporting import Reporter
from recalls.workers.senders import Senders
from recalls.workers.telemetry import publish_stats_forever
from recalls.workers.webhooks import WebhookSender

log = logging.getLogger("recalls.worker")


class NotOpenYet(ConnectionError):
    """A service the worker is still waiting for at start: what /readyz names until it answers."""


async def _not_open_yet() -> None:
    raise NotOpenYet


def broker_check(connection: AbstractRobustConnection) -> Check:
    async def broker() -> None:
        if connection.is_closed or not connection.connected.is_set():
            raise ConnectionError("broker connection down")

    return broker


@contextlib.asynccontextmanager
async def readiness_checks(settings: Settings) -> AsyncIterator[dict[str, Check]]:
    """What /readyz asks: the broker connection, Redis in fleet mode, the store where events are recorded.

    The broker and the store answer :class:`NotOpenYet` until the worker has opened them and put their
    own checks in this dict, so that a worker waiting for them at start says which it waits for.
    """
    checks: dict[str, Check] = {"broker": _not_open_yet}
    if settings.record_events:
        checks["store"] = _not_open_yet
    if settings.redis_url is None:
        yield checks
        return
    # A client of its own, so a probe never queues behind the limiter's calls.
    redis = redis_client(settings)
    try:

        async def redis_ping() -> None:
            await redis.ping()

        checks["redis"] = redis_ping
        yield checks
    finally:
        await redis.aclose()


def _gated(handle: Handle, claim: BudgetClaim) -> Handle:
    """Hand a delivery on only while the budget claim holds.

    One held back stays unacked: the claim is lost and the worker stopping, or the connection went again,
    and either way the broker requeues it when its channel closes.  (A nack would only bring it back to
    this consumer, round and round, until the stop cancels it.)
    """

    async def on_message(message: AbstractIncomingMessage) -> None:
        if await claim.permits():
            await handle(message)

    return on_message


@contextlib.asynccontextmanager
async def coordination(
    settings: Settings, metrics: WorkerMetrics
) -> AsyncIterator[tuple[RateLimiter, TokenSource]]:
    """Local mode: this process's own limiter and token.  Fleet mode (Redis): the fleet's.

    Either way, a call holds for a token while the endpoint fails (:mod:`recalls.shared.dvsa.token_hold`).
    """
    fetcher = TokenCache(settings, metrics=metrics)
    patience = settings.token_patience
    try:
        if settings.redis_url is None:
            local = SpacingLimiter(settings.rate_limit, settings.rate_margin)
            yield local, TokenHold(fetcher, patience=patience)
            return
        hold = RedisHold()
        redis = redis_client(settings, on_master_change=hold.changed)
        try:
            metrics.count_redis_outage(lambda: hold.in_outage)
            limiter = RedisLimiter(
                redis,
                prefix=settings.prefix,
                limit=settings.rate_limit,
                margin=settings.rate_margin,
                hold=hold,
            )
            shared = RedisTokenCache(redis, fetcher, prefix=settings.prefix, hold=hold, metrics=metrics)
            yield limiter, TokenHold(shared, patience=patience)
        finally:
            await redis.aclose()
    finally:
        await fetcher.aclose()


@contextlib.asynccontextmanager
async def dvsa_client(settings: Settings) -> AsyncIterator[DvsaClient]:
    """The process's one DVSA client: a pooled HTTP client, the token source, the limiter, the figures."""
    metrics = WorkerMetrics()
    async with (
        coordination(settings, metrics) as (limiter, tokens),
        pooled_transport(settings.effective_base_url, settings.dvsa_timeout) as transport,
    ):
        yield DvsaClient(
            transport,
            base_url=settings.effective_base_url,
            api_key=settings.dvsa_api_key.get_secret_value(),
            tokens=tokens,
            limiter=limiter,
            metrics=metrics,
        )


class Worker:
    """Consumes the command queues until :meth:`stop` is called."""

    def __init__(self, settings: Settings, dvsa: DvsaClient) -> None:
        self._settings = settings
        self._dvsa = dvsa
        self._topology = topology_of(settings)
        self._in_flight = InFlight()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.recorder: EventRecorder | None = None  # set once running
        self.ops_port: int | None = None  # set once serving /metrics
        self._lost: Refused | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Wait for the services, claim the budget, consume until stopped.

        A stop while waiting returns at once.  Raises :class:`Refused` when another worker's budget is in
        use on the prefix: at start, or after a reconnect (then once the worker has stopped).
        """
        settings = self._settings
        patience = Patience(settings, self._stopping)
        try:
            async with contextlib.AsyncExitStack() as stack:
                checks = await stack.enter_async_context(self._operations())
                db = await stack.enter_async_context(store_answering(settings, patience))
                if "store" in checks:
                    checks["store"] = db.ping
                connection = await broker_answering(settings, patience, "recalls-worker")
                stack.push_async_callback(connection.close)
                checks["broker"] = broker_check(connection)
                await redis_answering(settings, patience)
                claim = await BudgetClaim.take(connection, settings, on_lost=self._lose_budget)
                stack.push_async_callback(claim.release)  # after the drain: in-flight calls still spend it
                await self._serve(connection, db, claim)
        except Stopped:
            log.info("stopped before consuming")
            return
        if self._lost is not None:
            raise self._lost

    def _lose_budget(self, refused: Refused) -> None:
        self._lost = refused
        self.stop()

    async def _serve(self, connection: AbstractRobustConnection, db: Database, claim: BudgetClaim) -> None:
        mend = partial(ensure, connection, self._topology)
        await mend()
        publishing = await connection.channel(publisher_confirms=True)
        reporter = await Reporter.open(publishing, self._topology, mend)
        senders = Senders.of(self._settings)
        handler = Handler(self._settings, self._dvsa, reporter, Doubts(Ledger(db)), senders)
        consuming = await connection.channel(publisher_confirms=False)
        await consuming.set_qos(prefetch_count=self._settings.prefetch)
        on_message = self._in_flight.tracking(_gated(handler, claim))
        consumers: list[tuple[AbstractQueue, str]] = []
        for verb in VERBS:
            for lane in LANES:
                queue = await consuming.get_queue(self._topology.command_queue(verb, lane))
                consumers.append((queue, await queue.consume(on_message)))
        async with contextlib.AsyncExitStack() as stack:
            if self._settings.record_events:
                await stack.enter_async_context(self._recording(connection, db, reporter, senders))
            await stack.enter_async_context(self._telling(connection))
            self._announce(senders)
            self.ready.set()
            await self._stopping.wait()
            for queue, tag in consumers:
                await queue.cancel(tag)
            await self._drain()
            await consuming.close()

    @contextlib.asynccontextmanager
    async def _recording(
        self, connection: AbstractRobustConnection, db: Database, reporter: Reporter, senders: Senders
    ) -> AsyncIterator[None]:
        """The event recorder and, beside it, the sender of the webhooks of the batches it ends."""
        # trust_env=False: no proxy variable may choose where a webhook goes (the URL's checks decide).
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as http:
            sender = WebhookSender(db, self._settings, http)
            sending = asyncio.create_task(sender.run(), name="webhook-sender")
            self.recorder = EventRecorder(
                db,
                self._topology,
                senders=senders,
                reporter=reporter,
                metrics=self._dvsa.metrics,
                prefetch=self._settings.prefetch,
                after_ending=sender.wake,
            )
            await self.recorder.start(connection)
            try:
                yield
            finally:
                await self.recorder.stop(self._settings.shutdown_grace)
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _operations(self) -> AsyncIterator[dict[str, Check]]:
        """With a metrics port, /metrics, /healthz and /readyz from the very start (yields the checks).

        A worker waiting for its services is alive, since a restart would not bring them back, and
        unready, naming what it waits for.
        """
        async with readiness_checks(self._settings) as checks:
            port = self._settings.metrics_port
            if port is None:
                yield checks
                return
            endpoints = OpsEndpoints(self._dvsa.metrics, alive=self.alive, checks=checks)
            async with serving(endpoints, self._settings.metrics_host, port) as bound:
                self.ops_port = bound
                yield checks

    @contextlib.asynccontextmanager
    async def _telling(self, connection: AbstractRobustConnection) -> AsyncIterator[None]:
        """Live stats for the dashboard; with a metrics port, the queue gauges."""
        metrics = self._dvsa.metrics
        metrics.count_in_flight(lambda: len(self._in_flight))
        tasks = [publish_stats_forever(connection, self._topology, metrics, lambda: len(self._in_flight))]
        if self._settings.metrics_port is not None:
            tasks.append(watch_queue_depths(connection, self._topology, metrics))
        running = [asyncio.create_task(task) for task in tasks]
        try:
            yield
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def alive(self) -> bool:
        """Not stopping: what /healthz reports (waiting for its services at start, a worker is alive)."""
        return not self._stopping.is_set()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        log.info("finishing in-flight commands", extra={"in_flight": len(self._in_flight)})
        requeued = await self._in_flight.drain(self._settings.shutdown_grace)
        if requeued:
            log.warning("requeued unfinished commands", extra={"requeued": requeued})

    def _announce(self, senders: Senders) -> None:
        settings = self._settings
        if senders.anyone_commands:
            log.warning(
                "RECALLS_PUBLISHER_USERS is not set: taking commands from any broker user that may publish "
                "to %s",
                self._topology.commands_exchange,
            )
        if settings.uses_sandbox:
            log.warning(
                "RECALLS_DVSA_BASE_URL is not set: talking to the local DVSA SANDBOX at %s, not to DVSA",
                settings.sandbox_url,
            )
        log.info(
            "worker consuming",
            extra={
                "prefix": settings.prefix,
                "rate_limit": settings.rate_limit,
                "mode": "local" if settings.redis_url is None else "fleet",
                "dvsa": settings.effective_base_url,
            },
        )
