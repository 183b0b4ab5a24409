"""The API's operations surface: metrics (``/metrics``), liveness (``/healthz``), readiness (``/readyz``).

The probes answer on the API's port; the metrics have an app of their own (:func:`metrics_app`), which
``recalls api`` serves on ``RECALLS_API_METRICS_PORT`` only, so a customer's key reaches none of them.
The metrics live in a registry the app owns (never prometheus_client's global one), so two apps in one
process, as in tests, count apart.  Requests are labelled by route template, never by raw path or query
string: the query may hold an API key, and raw paths would make labels unbounded.  Readiness names each
failing check by the kind of failure only, so no URL (and no password in one) reaches the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractConnection
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recalls.shared.store.database import Database

UNMATCHED = "unmatched"  # the route label of a request no route took (404s of made-up paths)
STORE_TIMEOUT = 2.0


class ApiMetrics:
    """The API's metrics in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "recalls_api_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "recalls_api_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.batches = Counter("recalls_batches_submitted", "Batch checks submitted.", registry=self.registry)
        self.vins = Counter(
            "recalls_batch_vins_submitted", "VINs of the batch checks submitted.", registry=self.registry
        )

    def batch_submitted(self, vins: int) -> None:
        self.batches.inc()
        self.vins.inc(vins)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (pure ASGI: it sees the router's scope)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self._metrics.requests.labels(scope["method"], route, str(status)).inc()
            self._metrics.duration.labels(route).observe(time.perf_counter() - started)


Readiness = Callable[[], Awaitable[dict[str, str]]]


def readiness(connection: AbstractConnection | None, db: Database) -> Readiness:
    """The checks of ``/readyz``: the broker connection is open and the store answers ``SELECT 1``."""

    async def checks() -> dict[str, str]:
        return {"broker": _broker(connection), "store": await _store(db)}

    return checks


def _broker(connection: AbstractConnection | None) -> str:
    if connection is None:
        return "down: no broker connection given to the app"
    if connection.is_closed or not connection.connected.is_set():
        return "down: connection closed"
    return "ok"


async def _store(db: Database) -> str:
    try:
        async with asyncio.timeout(STORE_TIMEOUT), db.reading() as connection:
            await connection.execute(text("SELECT 1"))
    except TimeoutError:
        return f"down: no answer within {STORE_TIMEOUT:g} s"
    except (SQLAlchemyError, OSError) as exc:
        return f"down: {type(exc).__name__}"  # the class only: a driver's message may quote the URL
    return "ok"


def metrics_app(metrics: ApiMetrics) -> Starlette:
    """``/metrics`` alone, for a port apart from the API's."""

    async def exposition(_request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", exposition)])


def router(checks: Readiness) -> APIRouter:
    """``/healthz`` and ``/readyz``, open to any caller: probes send no key, and the answers hold no data."""
    ops = APIRouter(include_in_schema=False)

    @ops.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}  # answering at all is the proof: the event loop runs

    @ops.get("/readyz")
    async def readyz() -> JSONResponse:
        results = await checks()
        ready = all(result == "ok" for result in results.values())
        body = {"status": "ready" if ready else "unready", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    return ops
