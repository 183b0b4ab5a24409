"""The worker process: consume every verb's queues, hand deliveries to the handler, stop gracefully.

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

import httpx
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from redis import asyncio as aioredis

from shared.amqp import connect
from shared.contracts import VERBS
from shared.dvsa.client import DvsaClient
from shared.dvsa.fleet_tokens import RedisTokenCache
from shared.dvsa.token_hold import TokenHold
from shared.dvsa.tokens import TokenCache, TokenSource
from shared.fleet_limiter import RedisLimiter
from shared.metrics import WorkerMetrics
from shared.ratelimit import RateLimiter, SpacingLimiter
from shared.redis_hold import RedisHold
from shared.settings import Settings
from shared.store.database import Database
from shared.store.ledger import Ledger
from shared.topology import LANES, Topology, declare
from workers.doubts import Doubts
from workers.handler import Handler
from workers.inflight import InFlight
from workers.ledger import EventRecorder
from workers.ops_http import Check, OpsEndpoints, serving, watch_queue_depths
from workers.reporting import Reporter
from workers.telemetry import publish_stats_forever
from workers.webhooks import WebhookSender

log = logging.getLogger("recalls.worker")


@contextlib.asynccontextmanager
async def readiness_checks(
    settings: Settings, connection: AbstractRobustConnection, db: Database
) -> AsyncIterator[dict[str, Check]]:
    """What /readyz asks: the broker connection, Redis in fleet mode, the store where events are recorded."""

    async def broker() -> None:
        if connection.is_closed or not connection.connected.is_set():
            raise ConnectionError("broker connection down")

    checks: dict[str, Check] = {"broker": broker}
    if settings.record_events:
        checks["store"] = db.ping
    if settings.redis_url is None:
        yield checks
        return
    # A client of its own, so a probe never queues behind the limiter's calls.
    redis = aioredis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=2)
    try:

        async def redis_ping() -> None:
            await redis.ping()

        yield {**checks, "redis": redis_ping}
    finally:
        await redis.aclose()


def topology_of(settings: Settings) -> Topology:
    return Topology(settings.prefix, settings.retry_tiers)


@contextlib.asynccontextmanager
async def coordination(
    settings: Settings, metrics: WorkerMetrics
) -> AsyncIterator[tuple[RateLimiter, TokenSource]]:
    """Local mode: this process's own limiter and token.  Fleet mode (Redis): the fleet's.

    Either way, a call holds for a token while the endpoint fails (:mod:`shared.dvsa.token_hold`).
    """
    fetcher = TokenCache(settings, metrics=metrics)
    patience = settings.token_patience
    try:
        if settings.redis_url is None:
            local = SpacingLimiter(settings.rate_limit, settings.rate_margin)
            yield local, TokenHold(fetcher, patience=patience)
            return
        redis = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_timeout=2, socket_connect_timeout=2
        )
        try:
            hold = RedisHold()
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
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    metrics = WorkerMetrics()
    async with (
        coordination(settings, metrics) as (limiter, tokens),
        httpx.AsyncClient(timeout=settings.dvsa_timeout, limits=limits) as http,
    ):
        yield DvsaClient(
            http,
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

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with Database.connect(self._settings) as db:
            connection = await connect(self._settings, "recalls-worker")
            try:
                await self._serve(connection, db)
            finally:
                await connection.close()

    async def _serve(self, connection: AbstractRobustConnection, db: Database) -> None:
        publishing = await connection.channel(publisher_confirms=True)
        await declare(publishing, self._topology)
        reporter = await Reporter.open(publishing, self._topology)
        handler = Handler(self._settings, self._dvsa, reporter, Doubts(Ledger(db)))
        consuming = await connection.channel(publisher_confirms=False)
        await consuming.set_qos(prefetch_count=self._settings.prefetch)
        on_message = self._in_flight.tracking(handler)
        consumers: list[tuple[AbstractQueue, str]] = []
        for verb in VERBS:
            for lane in LANES:
                queue = await consuming.get_queue(self._topology.command_queue(verb, lane))
                consumers.append((queue, await queue.consume(on_message)))
        async with contextlib.AsyncExitStack() as stack:
            if self._settings.record_events:
                await stack.enter_async_context(self._recording(connection, db))
            await stack.enter_async_context(self._telling(connection, db))
            self._announce()
            self.ready.set()
            await self._stopping.wait()
            for queue, tag in consumers:
                await queue.cancel(tag)
            await self._drain()
            await consuming.close()

    @contextlib.asynccontextmanager
    async def _recording(self, connection: AbstractRobustConnection, db: Database) -> AsyncIterator[None]:
        """The event recorder and, beside it, the sender of the webhooks of the batches it ends."""
        # trust_env=False: no proxy variable may choose where a webhook goes (the URL's checks decide).
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as http:
            sender = WebhookSender(db, self._settings, http)
            sending = asyncio.create_task(sender.run(), name="webhook-sender")
            self.recorder = EventRecorder(
                db, self._topology, prefetch=self._settings.prefetch, after_write=sender.wake
            )
            await self.recorder.start(connection)
            try:
                yield
            finally:
                await self.recorder.stop(self._settings.shutdown_grace)
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _telling(self, connection: AbstractRobustConnection, db: Database) -> AsyncIterator[None]:
        """Live stats for the dashboard; with a metrics port, the operations endpoints and queue gauges."""
        metrics = self._dvsa.metrics
        metrics.count_in_flight(lambda: len(self._in_flight))
        tasks = [publish_stats_forever(connection, self._topology, metrics, lambda: len(self._in_flight))]
        async with contextlib.AsyncExitStack() as stack:
            port = self._settings.metrics_port
            if port is not None:
                checks = await stack.enter_async_context(readiness_checks(self._settings, connection, db))
                endpoints = OpsEndpoints(metrics, alive=self.alive, checks=checks)
                self.ops_port = await stack.enter_async_context(
                    serving(endpoints, self._settings.metrics_host, port)
                )
                tasks.append(watch_queue_depths(connection, self._topology, metrics))
            running = [asyncio.create_task(task) for task in tasks]
            try:
                yield
            finally:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

    def alive(self) -> bool:
        """Consuming and not stopping: what /healthz reports."""
        return self.ready.is_set() and not self._stopping.is_set()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        log.info("finishing in-flight commands", extra={"in_flight": len(self._in_flight)})
        requeued = await self._in_flight.drain(self._settings.shutdown_grace)
        if requeued:
            log.warning("requeued unfinished commands", extra={"requeued": requeued})

    def _announce(self) -> None:
        settings = self._settings
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
