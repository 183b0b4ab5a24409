"""The dashboard as ``recalls api`` serves it: its board, started and stopped with the app, and routes."""

from __future__ import annotations

from dataclasses import dataclass

from aio_pika.abc import AbstractConnection
from fastapi import APIRouter

from recalls.ops.dashboard.board import Dashboard
from recalls.ops.dashboard.routes import router
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from recalls.shared.store.sessions import Sessions


@dataclass(frozen=True)
class DashboardSurface:
    """What the batch API's app serves and runs of the dashboard (its ``Surface``)."""

    board: Dashboard
    router: APIRouter

    async def start(self, connection: AbstractConnection | None) -> None:
        await self.board.start(connection)

    async def stop(self) -> None:
        await self.board.stop()


def surface(settings: Settings, db: Database) -> DashboardSurface:
    """The dashboard over ``db``, for the keys with the ``ops`` scope and their sessions."""
    board = Dashboard(settings, db)
    return DashboardSurface(board, router(board, ApiKeys(db), Sessions(db), public_url=settings.public_url))
