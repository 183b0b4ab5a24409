"""The batch API's keys: created with a name, shown in clear once, verified, listed and revoked.

A key reads ``rk_<id>_<secret>``: the id (8 hex digits, random) finds its row, and only the SHA-256 of
the whole key is stored, compared in constant time.  A key is never logged nor put in an error: the
name and the id are what identify one.

A key has scopes (:data:`SCOPES`): ``batch`` submits and reads its own batches, ``ops`` sees the whole
fleet.  Each key has a webhook secret of its own (``whsec_`` and 32 random bytes, base64), which signs
its batches' webhooks; it is kept in clear, since signing needs it, and can be rotated.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from recalls.shared.contracts import utc_now
from recalls.shared.store.database import Database
from recalls.shared.store.tables import UtcDateTime, api_keys

NAME_MAX = 100
_KEY = re.compile(r"rk_([0-9a-f]{8})_([A-Za-z0-9_-]{32})")
_SECRET_BYTES = 24  # 32 characters of URL-safe base64
SCOPES = ("batch", "ops")
_WEBHOOK_SECRET_BYTES = 32
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (how a webhook secret starts, as Standard Webhooks write it)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    scopes: tuple[str, ...] = ("batch",)


def key_record(row: Row[Any]) -> ApiKey:
    """The :class:`ApiKey` of an ``api_keys`` row."""
    return ApiKey(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        scopes=tuple(row.scopes.split()),
    )


def _new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_WEBHOOK_SECRET_BYTES)).decode()


def digest(secret: str) -> str:
    """What the store keeps of a secret it must recognise but never show: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """Creates, verifies, lists and revokes API keys."""

    def __init__(self, db: Database, *, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def create(self, name: str, scopes: tuple[str, ...] = ("batch",)) -> tuple[ApiKey, str]:
        """A new key named ``name``: its record, and the key in clear (to show once; it is not kept)."""
        name = name.strip()
        if not name or len(name) > NAME_MAX:
            raise ValueError(f"name: must be 1 to {NAME_MAX} characters")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(f"scopes: must be one or more of {', '.join(SCOPES)}")
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        new = dialect.insert(api_keys).on_conflict_do_nothing().returning(*api_keys.c)
        while True:  # ids are random: one already taken (rare) is drawn again
            key_id = secrets.token_hex(4)
            key = f"rk_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
            row = {
                "id": key_id,
                "name": name,
                "key_hash": digest(key),
                "created_at": self._clock(),
                "scopes": " ".join(scope for scope in SCOPES if scope in scopes),
                "webhook_secret": _new_webhook_secret(),
            }
            async with self._db.writing() as connection:
                created = (await connection.execute(new, row)).first()
            if created is not None:
                return key_record(created), key

    async def verify(self, presented: str) -> ApiKey | None:
        """The key's record if ``presented`` is a key in force (``None``: malformed, unknown or revoked)."""
        parsed = _KEY.fullmatch(presented)
        if parsed is None:
            return None
        async with self._db.reading() as connection:
            query = select(api_keys).where(api_keys.c.id == parsed.group(1))
            row = (await connection.execute(query)).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest(presented)):
            return None
        return None if row.revoked_at is not None else key_record(row)

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first (names and ids; never a key or its hash)."""
        columns = (
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
            api_keys.c.scopes,
        )
        query = select(*columns).order_by(api_keys.c.created_at, api_keys.c.id)
        async with self._db.reading() as connection:
            return [key_record(row) for row in await connection.execute(query)]

    async def revoke(self, key_id: str) -> bool:
        """Revoke the key (a revoked one keeps its first revocation time); ``False``: no such key."""
        revoking = (
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(revoked_at=func.coalesce(api_keys.c.revoked_at, literal(self._clock(), UtcDateTime)))
        )
        async with self._db.writing() as connection:
            return (await connection.execute(revoking)).rowcount > 0

    async def webhook_secret(self, key_id: str) -> str | None:
        """The secret that signs ``key_id``'s webhooks (``None``: no such key, or made before secrets)."""
        query = select(api_keys.c.webhook_secret).where(api_keys.c.id == key_id)
        async with self._db.reading() as connection:
            secret: str | None = (await connection.execute(query)).scalar_one_or_none()
        return secret

    async def rotate_webhook_secret(self, key_id: str) -> str | None:
        """A new webhook secret for ``key_id``, replacing the old at once (``None``: no such key)."""
        secret = _new_webhook_secret()
        rotating = update(api_keys).where(api_keys.c.id == key_id).values(webhook_secret=secret)
        async with self._db.writing() as connection:
            changed = (await connection.execute(rotating)).rowcount > 0
        return secret if changed else None
