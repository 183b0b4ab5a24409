"""The embedded store's file: private to its owner, and every acknowledged commit on disk."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from recalls.shared.settings import load_settings
from recalls.shared.store.database import Database

pytestmark = pytest.mark.integration


async def test_the_sqlite_file_and_its_journal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "store" / "recalls.db"
    async with Database.connect(load_settings(sqlite_path=path)):
        files = sorted(path.parent.iterdir())
        modes = {file.name: stat.S_IMODE(file.stat().st_mode) for file in files}
    assert modes == {name: 0o600 for name in ("recalls.db", "recalls.db-shm", "recalls.db-wal")}


async def test_a_commit_is_synced_to_disk_before_it_counts(tmp_path: Path) -> None:
    async with Database.connect(load_settings(sqlite_path=tmp_path / "recalls.db")) as db:

        def synchronous(connection: Connection) -> int:
            return int(connection.execute(text("PRAGMA synchronous")).scalar_one())

        assert await db.run(synchronous, write=False) == 2  # FULL; NORMAL (1) may lose the last commits
