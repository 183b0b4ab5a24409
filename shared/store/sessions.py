"""The dashboard's sign-in sessions: a random token per sign-in, kept only as its hash, with an end.

Signing in with an API key starts a session; the browser then holds the session's token (in a cookie)
instead of the key.  A session stands for its key: it ends :data:`LIFETIME` after it starts, at sign-out,
or as soon as the key is revoked (every look-up joins the key's row).  The store keeps the token's
SHA-256 only, so its rows let nobody in; expired rows are cleared whenever a session starts.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable

from sqlalchemy import delete, insert, select

from recalls.shared.contracts import utc_now
from recalls.shared.store.api_keys import ApiKey, digest, key_record
from recalls.shared.store.database import Database
from recalls.shared.store.tables import api_keys, sessions

LIFETIME = dt.timedelta(hours=12)  # a working day and then some: an operator signs in once a day
_TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what token_urlsafe(32) makes


class Sessions:
    """Starts, looks up and ends sign-in sessions."""

    def __init__(self, db: Database, *, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def start(self, key: ApiKey) -> tuple[str, dt.datetime]:
        """A new session for ``key``: its token (to hand over once; it is not kept) and when it ends."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = self._clock()
        ends = now + LIFETIME
        row = {"token_hash": digest(token), "key_id": key.id, "created_at": now, "expires_at": ends}
        async with self._db.writing() as connection:
            await connection.execute(delete(sessions).where(sessions.c.expires_at <= now))
            await connection.execute(insert(sessions), row)
        return token, ends

    async def key(self, token: str) -> ApiKey | None:
        """The key a session in force stands for (``None``: malformed, unknown, ended, or its key revoked)."""
        if _TOKEN.fullmatch(token) is None:
            return None
        # Found by the hash of a 256-bit random token: how long the look-up takes tells nothing useful.
        query = (
            select(api_keys)
            .join(sessions, sessions.c.key_id == api_keys.c.id)
            .where(
                sessions.c.token_hash == digest(token),
                sessions.c.expires_at > self._clock(),
                api_keys.c.revoked_at.is_(None),
            )
        )
        async with self._db.reading() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else key_record(row)

    async def end(self, token: str) -> None:
        """End the session of ``token`` (none such: nothing to do)."""
        async with self._db.writing() as connection:
            await connection.execute(delete(sessions).where(sessions.c.token_hash == digest(token)))
