"""The dashboard's sign-in sessions on SQLite and the real PostgreSQL (migration 5).

A session stands for its key until it expires, is ended, or its key is revoked; the store keeps only
the token's hash, and starting a session clears the expired ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from recalls.shared.store.sessions import LIFETIME, Sessions
from recalls.shared.store.tables import sessions as sessions_table

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


class Clock:
    """A settable clock for the store's own times."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


async def stored(db: Database) -> list[dict[str, object]]:
    async with db.reading() as connection:
        return [row._asdict() for row in await connection.execute(select(sessions_table))]


async def test_a_session_stands_for_its_key_until_it_expires_and_keeps_only_a_hash(db: Database) -> None:
    clock = Clock()
    keys, sessions = ApiKeys(db), Sessions(db, clock=clock)
    record, key = await keys.create("operators", scopes=("ops",))
    token, ends = await sessions.start(record)
    assert ends == T0 + LIFETIME
    assert token != key and len(token) == 43
    assert await sessions.key(token) == record

    [row] = await stored(db)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(row) and key not in str(row)

    clock.now = ends - dt.timedelta(seconds=1)
    assert await sessions.key(token) == record
    clock.now = ends
    assert await sessions.key(token) is None


async def test_a_session_ends_at_sign_out_and_with_its_key(db: Database) -> None:
    keys, sessions = ApiKeys(db), Sessions(db)
    record, _ = await keys.create("operators", scopes=("ops",))
    signed_out, _ = await sessions.start(record)
    other, _ = await sessions.start(record)
    await sessions.end(signed_out)
    await sessions.end(signed_out)  # twice: nothing left to do
    assert await sessions.key(signed_out) is None
    assert await sessions.key(other) == record
    await keys.revoke(record.id)
    assert await sessions.key(other) is None


async def test_malformed_and_unknown_tokens_stand_for_nobody(db: Database) -> None:
    record, _ = await ApiKeys(db).create("operators", scopes=("ops",))
    token, _ = await Sessions(db).start(record)
    for presented in ("", token[:-1], token + "A", f" {token}", "x" * 43, token.replace(token[0], "é")):
        assert await Sessions(db).key(presented) is None, presented


async def test_starting_a_session_clears_the_expired_ones(db: Database) -> None:
    clock = Clock()
    sessions = Sessions(db, clock=clock)
    record, _ = await ApiKeys(db).create("operators", scopes=("ops",))
    await sessions.start(record)
    clock.now += LIFETIME
    fresh, _ = await sessions.start(record)
    [row] = await stored(db)
    assert row["token_hash"] == hashlib.sha256(fresh.encode()).hexdigest()
