"""The store's tests run each on both of its databases: a SQLite file, then a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.database import Database

PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    if request.param == "sqlite":
        yield load_settings(sqlite_path=tmp_path / "store" / "recalls.db")
        return
    name = f"recalls_it_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")  # CREATE DATABASE needs it
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield load_settings(database_url=f"postgresql://postgres@127.0.0.1:5432/{name}")
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def db(store_settings: Settings) -> AsyncIterator[Database]:
    """The store migrated as ``recalls migrate`` does, then opened as a worker opens it."""
    await migrated(store_settings)
    async with Database.connect(store_settings) as database:
        yield database


async def migrated(settings: Settings) -> None:
    async with Database.opened(settings) as database:
        await database.migrate()
