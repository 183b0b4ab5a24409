"""``recalls status`` and ``recalls batch status`` only read, and ``recalls reconcile`` has nothing to
sweep without a ledger: with no store where the settings point, they say where they looked and exit 1,
and create nothing (no SQLite file, no table in PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from recalls.shared.settings import Settings
from recalls.shared.store.database import Database, database_url, store_location
from recalls.shared.store.migrations import MIGRATIONS, apply_migrations
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

COMMANDS = [["status", "SALGA2EV5HA123456"], ["batch", "status", "0" * 32], ["reconcile"]]
PASSWORD = "pg-password-never-shown"


def recalls(args: list[str], variables: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``recalls ARGS`` in a process of its own, with no RECALLS_* variable but ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RECALLS_")}
    return subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-c", "from recalls.cli.main import main; main()", *args],
        cwd=cwd,
        env=env | variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def store_variables(settings: Settings) -> dict[str, str]:
    if settings.database_url is None:
        return {"RECALLS_SQLITE_PATH": str(settings.sqlite_path)}
    return {"RECALLS_DATABASE_URL": settings.database_url.get_secret_value()}


async def tables_in(settings: Settings) -> int:
    engine = create_async_engine(database_url(settings))
    try:
        async with engine.connect() as connection:
            query = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            return int((await connection.execute(text(query))).scalar_one())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("args", COMMANDS, ids=["status", "batch status", "reconcile"])
async def test_with_no_store_a_read_only_command_says_where_it_looked_and_creates_nothing(
    store_settings: Settings, tmp_path: Path, args: list[str]
) -> None:
    if store_settings.database_url is None:
        path = store_settings.sqlite_path
        variables = {"RECALLS_SQLITE_PATH": str(path)}
        where = f"{path} (RECALLS_SQLITE_PATH)"
        expected = f"no store at {where}; run `recalls migrate` first, or set RECALLS_DATABASE_URL"
    else:
        url = database_url(store_settings).set(drivername="postgresql", password=PASSWORD)
        variables = {"RECALLS_DATABASE_URL": url.render_as_string(hide_password=False)}
        where = f"PostgreSQL database {url.database!r} on 127.0.0.1:5432 (RECALLS_DATABASE_URL)"
        expected = f"no store at {where}; run `recalls migrate` first"

    done = await asyncio.to_thread(recalls, args, variables, tmp_path)

    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"error: {expected}\n")
    assert PASSWORD not in done.stderr
    if store_settings.database_url is None:
        assert not path.exists() and not path.parent.exists()
    else:
        assert await tables_in(store_settings) == 0


async def test_a_store_not_migrated_yet_is_named_and_left_as_it_is(
    store_settings: Settings, tmp_path: Path
) -> None:
    database = await Database.open(store_settings)
    try:
        async with database.writing() as connection:
            await apply_migrations(connection, MIGRATIONS[:-1])
    finally:
        await database.close()

    done = await asyncio.to_thread(recalls, COMMANDS[0], store_variables(store_settings), tmp_path)

    latest = MIGRATIONS[-1].version
    assert (done.returncode, done.stderr) == (
        1,
        f"error: the store at {store_location(store_settings)} lacks schema version {latest}; "
        "run `recalls migrate` first\n",
    )
    database = await Database.open(store_settings)
    try:
        async with database.reading() as connection:
            versions = await connection.execute(text("SELECT max(version) FROM schema_migrations"))
            assert versions.scalar_one() == MIGRATIONS[-2].version
    finally:
        await database.close()


@pytest.mark.parametrize("args", COMMANDS, ids=["status", "batch status", "reconcile"])
def test_a_store_that_does_not_answer_is_one_line_without_the_password(
    tmp_path: Path, args: list[str]
) -> None:
    unreachable = f"postgresql://fleet:{PASSWORD}@127.0.0.1:{free_port()}/recalls"
    done = recalls(args, {"RECALLS_DATABASE_URL": unreachable}, tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: the store at PostgreSQL database 'recalls' on 127.0.0.1:")
    assert "is unavailable (" in done.stderr
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
