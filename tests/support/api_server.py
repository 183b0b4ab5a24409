"""Running ``recalls api``'s own :func:`serve` in a test: what its uvicorn servers say they listen on.

``serve`` picks its API port itself (0: any free one), so a test learns where it listens from uvicorn's
"Uvicorn running on URL" lines, one per server (the API's, and the metrics' when a port is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from recalls.ops import dashboard
from recalls.producers.batch_api import serve
from recalls.shared.settings import Settings
from tests.support.batch_api import UvicornStarted


class UvicornServersStarted(UvicornStarted):
    """Every URL uvicorn says it listens on; :attr:`all` is set once ``servers`` of them have."""

    def __init__(self, servers: int) -> None:
        super().__init__()
        self.servers = servers
        self.urls: list[str] = []
        self.all = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.url = ""
        super().emit(record)
        if self.url:
            self.urls.append(self.url)
            if len(self.urls) == self.servers:
                self.all.set()


@contextlib.asynccontextmanager
async def served(settings: Settings, *, servers: int = 1, **options: Any) -> AsyncIterator[list[str]]:
    """:func:`serve` on a free loopback port (with ``options``) until ``servers`` listen: their URLs.

    It serves the dashboard too, as ``recalls api`` does.
    """
    started = UvicornServersStarted(servers)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(started)
    logger.setLevel(logging.INFO)
    serving = asyncio.create_task(serve(settings, "127.0.0.1", 0, surfaces=[dashboard.surface], **options))
    listening = asyncio.ensure_future(started.all.wait())
    try:
        async with asyncio.timeout(30):
            await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            serving.result()  # serve failed: say why
            raise AssertionError(f"serve stopped before {servers} servers listened: {started.urls}")
        yield started.urls
    finally:
        listening.cancel()
        serving.cancel()
        await asyncio.gather(serving, listening, return_exceptions=True)
        logger.removeHandler(started)
