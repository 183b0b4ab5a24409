"""The batch API's application: the endpoints, the error shape, and the work that outlives a request.

:func:`create_app` takes what the caller owns (settings, an open store, a connected publisher, and
the broker connection its surfaces read the fleet's figures from) and opens nothing itself.  Old
batches are purged as the app starts and hourly while it runs; at shutdown it waits for the batches
still being published.  Requests are logged by method, path and status only: the query string may hold
an API key.  Besides the batch API it serves the probes (``/healthz``, ``/readyz``) and the surfaces
it is given, under the same keys: ``recalls api`` gives it the operators' dashboard
(:mod:`recalls.ops.dashboard`), which the batch API does not import.  Its metrics are counted into
``metrics``, served apart (see ``ops``).

Batches whose publisher died are resumed as the app starts and every few seconds, and a body larger
than ``api_max_body`` is refused before anything else reads it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from aio_pika.abc import AbstractConnection
from fastapi import APIRouter, FastAPI, Request, Response

from recalls.producers.batch_api import errors, ops
from recalls.producers.batch_api.auth import KeyInUrlDeprecation, authenticator
from recalls.producers.batch_api.body_limit import BodyLimit
from recalls.producers.batch_api.correlation import CorrelationMiddleware
from recalls.producers.batch_api.jobs import PURGE_EVERY, RESUME_EVERY, BatchChecks, every
from recalls.producers.batch_api.routes import router
from recalls.producers.publisher import Publisher
from recalls.shared.contracts import utc_now
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.batches import BatchStatus
from recalls.shared.store.database import Database
from recalls.shared.store.sessions import Sessions

log = logging.getLogger("recalls.api")


class Surface(Protocol):
    """Endpoints served beside the batch API under its keys, started and stopped with the app."""

    @property
    def router(self) -> APIRouter: ...

    async def start(self, connection: AbstractConnection | None) -> None: ...

    async def stop(self) -> None: ...


SurfaceFactory = Callable[[Settings, Database], Surface]

DESCRIPTION = """Recall checks of many vehicles at once, in the shape of CarsXE's Recalls Batch API.

Submit VINs, poll the status (or pass a webhookUrl), then fetch the results as JSON or CSV.  Every
request carries an API key in the `x-api-key` header; the `key` query parameter still works but is
deprecated (URLs end up in logs and histories), and answers to it carry a `Deprecation` header.  Every
error answers `{"success": false, "error": NAME, "message": "field: reason"}` (see `ErrorBody`).
"""


def create_app(
    settings: Settings,
    db: Database,
    publisher: Publisher,
    *,
    connection: AbstractConnection | None = None,
    metrics: ops.ApiMetrics | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    surfaces: Sequence[SurfaceFactory] = (),
) -> FastAPI:
    """The batch API over ``db`` (migrated) and ``publisher`` (connected), both owned by the caller.

    ``connection``: the broker connection, also the caller's, that ``/readyz`` checks and each surface
    reads on (the dashboard: the workers' stats and the queue depths); without one ``/readyz`` answers
    503.  ``surfaces``: what else to serve, each built over ``settings`` and ``db``.  ``metrics``: where
    the app counts its requests and batches (the caller serves them with :func:`ops.metrics_app`); none
    given, a registry of its own that nobody reads.
    """
    metrics = metrics or ops.ApiMetrics()
    checks = _CountedChecks(settings, db, publisher, metrics, clock=clock)
    served = [make(settings, db) for make in surfaces]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await checks.purge()
        await checks.resume()
        chores = [
            asyncio.create_task(every(PURGE_EVERY, checks.purge), name="batch-purge"),
            asyncio.create_task(every(RESUME_EVERY, checks.resume), name="batch-resume"),
        ]
        for surface in served:
            await surface.start(connection)
        try:
            yield
        finally:
            for surface in reversed(served):
                await surface.stop()
            for chore in chores:
                chore.cancel()
            await asyncio.gather(*chores, return_exceptions=True)
            await checks.drain()

    app = FastAPI(
        title="recalls fleet batch API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # no third-party JavaScript from a CDN; /openapi.json is the description
        redoc_url=None,
    )
    errors.install(app)
    keys, sessions = ApiKeys(db), Sessions(db)
    app.include_router(router(settings, checks, authenticator(keys, sessions, "batch")))
    for surface in served:
        app.include_router(surface.router)
    app.include_router(ops.router(ops.readiness(connection, db)))
    app.add_middleware(BodyLimit, most=settings.api_max_body)  # innermost: its 413 is logged and counted
    app.middleware("http")(_log_request)
    app.add_middleware(ops.MetricsMiddleware, metrics=metrics)
    app.add_middleware(KeyInUrlDeprecation)
    app.add_middleware(CorrelationMiddleware)  # outermost: every line of a request carries its id
    return app


class _CountedChecks(BatchChecks):
    """Batch checks that count every batch submitted, and its VINs, in the API's metrics."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        publisher: Publisher,
        metrics: ops.ApiMetrics,
        *,
        clock: Callable[[], dt.datetime],
    ) -> None:
        super().__init__(settings, db, publisher, clock=clock)
        self._metrics = metrics

    async def submit(self, vins: Sequence[str], *, owner: str, webhook_url: str | None) -> BatchStatus:
        status = await super().submit(vins, owner=owner, webhook_url=webhook_url)
        self._metrics.batch_submitted(len(vins))
        return status


async def _log_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    log.info("%s %s %d", request.method, request.url.path, response.status_code)
    return response
