"""Runs the batch API: opens the store and one broker connection, serves the app with uvicorn until cancelled.

The connection carries the publisher's channel and the dashboard's (stats and queue depths).  Given
:class:`Tls` files, the API answers https only, and every answer carries ``Strict-Transport-Security``
so that browsers never try plain http on that host again.  With ``RECALLS_API_METRICS_PORT`` set, a
second uvicorn server answers ``/metrics`` on that port (bound to ``RECALLS_API_METRICS_HOST``, plain
http), counted by the API's own app: the API's port has no ``/metrics``.

Cancelling :func:`serve` shuts the servers down gracefully (requests in hand finish, batches being
published finish) before the store and the broker connection close.  uvicorn's access log is off:
its lines would carry the query string, and with it an API key; the app logs requests itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

from recalls.producers.batch_api.app import SurfaceFactory, create_app
from recalls.producers.batch_api.ops import ApiMetrics, metrics_app
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared import amqp
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database

HSTS = ("Strict-Transport-Security", "max-age=31536000")  # a year, the usual floor for preload lists


@dataclass(frozen=True)
class Tls:
    """The PEM files the API serves https with: a certificate chain and its (unencrypted) private key."""

    certfile: Path
    keyfile: Path

    def uvicorn_options(self) -> dict[str, Any]:
        return {"ssl_certfile": str(self.certfile), "ssl_keyfile": str(self.keyfile), "headers": [HSTS]}


async def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    tls: Tls | None = None,
    surfaces: Sequence[SurfaceFactory] = (),
) -> None:
    """Serve the batch API and ``surfaces`` on ``host``:``port`` (https with ``tls``) until stopped."""
    config = publisher_config(settings, name="recalls-api")
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(Database.connect(settings))
        connection = await stack.enter_async_context(
            await amqp.connect(config.amqp_url, name=config.name, connect_timeout=config.connect_timeout)
        )
        publisher = await stack.enter_async_context(
            Publisher.on_connection(connection, config.topology, declare=config.declare)
        )
        metrics = ApiMetrics()
        app = create_app(settings, db, publisher, connection=connection, metrics=metrics, surfaces=surfaces)
        over_tls = tls.uvicorn_options() if tls is not None else {}
        servers = [uvicorn.Server(_config(app, host, port, lifespan="on", **over_tls))]
        if settings.api_metrics_port is not None:
            exposition = metrics_app(metrics)
            where = (settings.api_metrics_host, settings.api_metrics_port)
            servers.append(_Companion(_config(exposition, *where, lifespan="off")))
        await _run(servers)


class _Companion(uvicorn.Server):
    """A server beside the API's that leaves the process's signals to it.

    Two servers that each capture SIGINT and SIGTERM restore each other's handlers on the way out,
    leaving a stopped server's handler in place; the API's server alone stops on a signal, and
    :func:`_run` stops the others with it.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(
    app: ASGIApp, host: str, port: int, *, lifespan: Literal["on", "off"], **options: Any
) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, access_log=False, log_config=None, lifespan=lifespan, **options
    )


async def _run(servers: list[uvicorn.Server]) -> None:
    """Run ``servers`` until one stops (a signal, a failure) or this is cancelled, then stop them all."""
    serving = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.shield(asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED))
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.wait(serving)
    for task in serving:
        task.result()  # a server that failed says why
