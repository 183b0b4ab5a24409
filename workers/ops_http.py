"""A worker's operations endpoints: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for probes.

Served by aiohttp on ``RECALLS_METRICS_HOST``:``RECALLS_METRICS_PORT`` when the port is set.  Liveness
(``/healthz``) says the event loop answers and the worker consumes and has not begun to stop;
readiness (``/readyz``) also asks every dependency, each within a short timeout, and names those that
failed by the kind of failure only (an error's text may hold a URL with a password).  While served,
the queue depths are read every few seconds into the gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from recalls.shared.metrics import WorkerMetrics
from recalls.shared.queue_depths import queue_depths
from recalls.shared.topology import Topology

log = logging.getLogger("recalls.worker.ops")
Check = Callable[[], Awaitable[None]]  # returns when the dependency answers, raises when it does not
CHECK_TIMEOUT = 2.0


class OpsEndpoints:
    """The three endpoints over a worker's figures, its liveness and its dependency checks."""

    def __init__(
        self, metrics: WorkerMetrics, *, alive: Callable[[], bool], checks: Mapping[str, Check]
    ) -> None:
        self._metrics = metrics
        self._alive = alive
        self._checks = checks

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._exposition)
        app.router.add_get("/healthz", self._liveness)
        app.router.add_get("/readyz", self._readiness)
        return app

    async def _exposition(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _liveness(self, _request: web.Request) -> web.Response:
        if self._alive():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "stopping"}, status=503)

    async def _readiness(self, _request: web.Request) -> web.Response:
        names = list(self._checks)
        results = await asyncio.gather(*(_run(self._checks[name]) for name in names))
        checks = dict(zip(names, results, strict=True))
        ready = self._alive() and all(result == "ok" for result in checks.values())
        body = {"status": "ready" if ready else "unready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)


async def _run(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except TimeoutError:
        return f"down: no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


@contextlib.asynccontextmanager
async def serving(endpoints: OpsEndpoints, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``endpoints`` on ``host``:``port`` (0: any free port) and yield the port bound."""
    runner = web.AppRunner(endpoints.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        log.info("serving /metrics, /healthz and /readyz", extra={"host": host, "port": bound})
        yield int(bound)
    finally:
        await runner.cleanup()


async def watch_queue_depths(
    connection: AbstractRobustConnection, topology: Topology, metrics: WorkerMetrics, *, every: float = 5.0
) -> None:
    """Read the fleet's queue depths into the gauges every ``every`` seconds until cancelled."""
    while True:
        try:
            metrics.queue_depths(await queue_depths(connection, topology))
        except Exception as exc:  # the broker is away: the readiness check says so, the gauges wait
            log.debug("could not read queue depths", extra={"error": type(exc).__name__})
        await asyncio.sleep(every)  # a cadence, not a wait for an event
