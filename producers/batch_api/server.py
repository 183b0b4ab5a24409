"""Runs the batch API: opens the store and one broker connection, serves the app with uvicorn until cancelled.

The connection carries the publisher's channel and the dashboard's (stats and queue depths).

Cancelling :func:`serve` shuts the server down gracefully (requests in hand finish, batches being
published finish) before the store and the broker connection close.  uvicorn's access log is off:
its lines would carry the query string, and with it an API key; the app logs requests itself.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from producers import broker
from producers.batch_api.app import create_app
from producers.publisher import Publisher
from shared.settings import Settings
from shared.store.database import Database
from shared.topology import Topology


async def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the batch API on ``host``:``port`` until cancelled (or uvicorn stops on a signal)."""
    topology = Topology(settings.prefix, settings.retry_tiers)
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(Database.connect(settings))
        connection = await stack.enter_async_context(await broker.connect(settings, name="recalls-api"))
        publisher = await stack.enter_async_context(Publisher.on_connection(connection, topology))
        app = create_app(settings, db, publisher, connection=connection)
        config = uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None, lifespan="on")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            await serving
            raise
