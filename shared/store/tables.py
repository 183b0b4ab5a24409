"""The store's tables as SQLAlchemy Core objects, for building queries (the DDL lives in the migrations).

Times are stored in UTC.  SQLite keeps no time zone, so :class:`UtcDateTime` turns every stored time
into UTC on the way in and marks it UTC on the way out: both dialects then hand back aware datetimes,
and SQLite's text timestamps (fixed width, microseconds always written) compare in time order.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime, stored in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store only takes aware times")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = MetaData()

# One row per (vehicle, campaign): what DVSA holds as far as the fleet's outcome events tell.
# updated_at is the completed_at of the newest event the row reflects, so older events lose.
ledger = Table(
    "ledger",
    metadata,
    Column("vin", String(17), primary_key=True),
    Column("manufacturer_campaign_reference", String(49), primary_key=True),
    Column("dvsa_campaign_reference", String(32)),
    Column("state", String(8), nullable=False),
    Column("recall_campaign_start_date", Date),
    Column("rectification_date", Date),
    Column("last_message_id", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime),
    Column("issued_at", UtcDateTime),  # of the command behind the last change: orders it against others
)

# One row per batch job: an import, a sync, a batch check.
batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("rejected", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("webhook_url", Text),  # where to say that the batch ended
    Column("owner", String(16)),  # the id of the API key that submitted it (None: the CLI)
    Column("completed_at", UtcDateTime),
    Column("error_message", Text),  # why it failed
    Column("lease_until", UtcDateTime),  # a batch check: until when its publishing is one process's
)

# The journal of a batch's commands, keyed by message_id, with each command's outcome once known.
batch_commands = Table(
    "batch_commands",
    metadata,
    Column("message_id", String(128), primary_key=True),
    Column("batch_id", String(32), nullable=False),
    Column("verb", String(8), nullable=False),
    Column("vin", String(17), nullable=False),
    Column("manufacturer_campaign_reference", String(49)),
    Column("published", Boolean, nullable=False, default=False),
    Column("result", String(16)),
    Column("reason", Text),
    Column("dvsa_status", Integer),
    Column("recalls", Text),
    Column("completed_at", UtcDateTime),
    Column("has_recalls", Boolean),  # a get's: any recall not FIXED (None: not a get, or no answer)
)

# The batch API's keys; only a hash of each key is kept (the key is shown once, when created).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("scopes", String(64), nullable=False, server_default="batch"),  # space-separated
    Column("webhook_secret", String(128)),  # signs this key's webhooks; kept in clear to sign with
)

# The dashboard's sign-in sessions: each stands for the key that signed in, until it expires or ends.
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 of the cookie's token, never the token
    Column("key_id", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# The newest whole answer DVSA gave about each vehicle (a get naming no campaign): the batch API's cache.
vin_checks = Table(
    "vin_checks",
    metadata,
    Column("vin", String(17), primary_key=True),
    Column("checked_at", UtcDateTime, nullable=False),
    Column("recalls", Text, nullable=False),  # JSON list of Recall
)

# The one webhook call due for each batch that has a webhook_url, from when it ended until delivered.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("batch_id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("gave_up", Boolean, nullable=False, default=False),
    Column("last_error", Text),
)
