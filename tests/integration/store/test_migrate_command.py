"""``recalls migrate`` brings a store to this version's schema, and a PostgreSQL store that lacks a
migration is refused, naming the command, by a process that would write to it; the embedded SQLite
store, and any store with RECALLS_MIGRATE_ON_START=true, is migrated by that process instead.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from recalls.shared.settings import Settings
from recalls.shared.store.database import Database, store_location
from recalls.shared.store.migrations import MIGRATIONS, apply_migrations
from tests.integration.store.test_read_only_commands import recalls, store_variables
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

LATEST = MIGRATIONS[-1].version
WRITING = ["api", "keys", "create", "migration-test"]  # a command that writes to the store


async def versions_in(settings: Settings) -> list[int]:
    async with Database.opened(settings) as database, database.reading() as connection:
        rows = await connection.execute(text("SELECT version FROM schema_migrations ORDER BY version"))
        return list(rows.scalars())


async def one_behind(settings: Settings) -> None:
    async with Database.opened(settings) as database, database.writing() as connection:
        await apply_migrations(connection, MIGRATIONS[:-1])


async def test_migrate_applies_what_the_store_lacks_and_then_nothing(
    store_settings: Settings, tmp_path: Path
) -> None:
    await one_behind(store_settings)
    variables = store_variables(store_settings)

    first = await asyncio.to_thread(recalls, ["migrate"], variables, tmp_path)
    again = await asyncio.to_thread(recalls, ["migrate", "--json"], variables, tmp_path)

    where = store_location(store_settings)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == f"{where}: applied schema version(s) {LATEST}; now at {LATEST}\n"
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"store": where, "applied": [], "schema_version": LATEST}
    assert await versions_in(store_settings) == [m.version for m in MIGRATIONS]


async def test_migrate_creates_a_store_from_nothing(store_settings: Settings, tmp_path: Path) -> None:
    done = await asyncio.to_thread(recalls, ["migrate", "--json"], store_variables(store_settings), tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["applied"] == [m.version for m in MIGRATIONS]


async def test_a_writing_command_refuses_a_postgresql_store_behind_and_migrates_sqlite(
    store_settings: Settings, tmp_path: Path
) -> None:
    await one_behind(store_settings)

    done = await asyncio.to_thread(recalls, WRITING, store_variables(store_settings), tmp_path)

    if store_settings.database_url is None:  # the embedded store: the command migrates it and goes on
        assert done.returncode == 0, done.stderr
        assert await versions_in(store_settings) == [m.version for m in MIGRATIONS]
    else:
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == (
            f"error: the store at {store_location(store_settings)} lacks schema version {LATEST}; "
            "run `recalls migrate` first\n"
        )
        assert await versions_in(store_settings) == [m.version for m in MIGRATIONS[:-1]]


async def test_migrate_on_start_lets_a_writing_command_migrate_postgresql(
    store_settings: Settings, tmp_path: Path
) -> None:
    await one_behind(store_settings)
    variables = store_variables(store_settings) | {"RECALLS_MIGRATE_ON_START": "true"}

    done = await asyncio.to_thread(recalls, WRITING, variables, tmp_path)

    assert done.returncode == 0, done.stderr
    assert await versions_in(store_settings) == [m.version for m in MIGRATIONS]


@pytest.mark.parametrize("store_settings", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("command", "code"), [(["worker"], 2), (["api", "--port", "{port}"], 1)], ids=["worker", "api"]
)
async def test_a_worker_and_the_api_refuse_to_start_on_a_store_behind(
    store_settings: Settings, tmp_path: Path, command: list[str], code: int
) -> None:
    await one_behind(store_settings)

    args = [arg.format(port=free_port()) for arg in command]
    done = await asyncio.to_thread(recalls, args, store_variables(store_settings), tmp_path)

    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == code, done.stderr
    assert lines == [
        f"error: the store at {store_location(store_settings)} lacks schema version {LATEST}; "
        "run `recalls migrate` first"
    ]
    assert "Traceback" not in done.stderr
    assert await versions_in(store_settings) == [m.version for m in MIGRATIONS[:-1]]
