"""The dashboard's state and its JSON snapshot: fleet figures, queue depths, and the caller's batches.

:class:`Dashboard` starts its readers on a broker connection the app is given (none: the page shows no
fleet figures, only batches), and answers :meth:`Dashboard.snapshot` from memory plus two store reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractConnection

from recalls.ops.dashboard.feed import DepthPoller, StatsFeed
from recalls.ops.dashboard.window import WINDOW, StatsWindow
from recalls.producers.batch_api.views import FINISHED, job
from recalls.shared.queue_depths import QueueDepth
from recalls.shared.settings import Settings
from recalls.shared.store.batches import Batches
from recalls.shared.store.database import Database
from recalls.shared.topology import topology_of

RECENT = 20  # batches shown, newest first


class Dashboard:
    """Reads the fleet's figures while running; :meth:`snapshot` is what ``/dashboard/data`` answers."""

    def __init__(self, settings: Settings, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        topology = topology_of(settings)
        self._settings = settings
        self._db = db
        self._clock = clock
        self._window = StatsWindow(WINDOW)
        self._feed = StatsFeed(topology, self._window, clock=clock)
        self._depths = DepthPoller(topology)
        self._polling: asyncio.Task[None] | None = None

    async def start(self, connection: AbstractConnection | None) -> None:
        if connection is None:
            return
        await self._feed.start(connection)
        self._polling = asyncio.create_task(self._depths.run(connection), name="dashboard-depths")

    async def stop(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
        await self._feed.stop()

    async def snapshot(self, owner: str) -> dict[str, Any]:
        now = self._clock()
        figures = dataclasses.asdict(self._window.figures(now))
        return {
            "now": now,
            "rate_limit": self._settings.rate_limit,
            **figures,
            "queues": _queues(self._depths.depths),
            "depths_age": None if self._depths.read_at is None else now - self._depths.read_at,
            "batches": [
                {**job(status).model_dump(mode="json", by_alias=False), "finished": status.status in FINISHED}
                for status in await Batches(self._db).recent(owner, RECENT)
            ],
        }


def _queues(depths: list[QueueDepth]) -> dict[str, Any]:
    return {
        "commands": [
            {"verb": depth.verb, "lane": depth.lane, "messages": depth.messages}
            for depth in depths
            if depth.kind == "command"
        ],
        "retry": [
            {"tier": depth.tier, "messages": depth.messages} for depth in depths if depth.kind == "retry"
        ],
        "dead": next((depth.messages for depth in depths if depth.kind == "dead"), None),
    }
