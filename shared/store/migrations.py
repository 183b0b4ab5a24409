"""The schema's history: numbered migrations, applied in order, each recorded in ``schema_migrations``.

A migration is written as plain SQL that both SQLite and PostgreSQL accept, and is never edited once
released: a change to the schema is a new migration (and the matching change in ``tables.py``).  All
pending migrations run in one transaction, so a failure leaves the schema as it was.  Concurrent
callers queue behind one lock (PostgreSQL: an advisory lock; SQLite: the write lock that the store's
``BEGIN IMMEDIATE`` takes) and the later ones find nothing left to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# An arbitrary constant: the advisory lock that serialises migrations of one PostgreSQL database.
_LOCK_KEY = 7_305_113_022


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ledger and batch jobs",
        (
            """CREATE TABLE ledger (
                vin VARCHAR(17) NOT NULL,
                manufacturer_campaign_reference VARCHAR(49) NOT NULL,
                dvsa_campaign_reference VARCHAR(32),
                state VARCHAR(8) NOT NULL,
                recall_campaign_start_date DATE,
                rectification_date DATE,
                last_message_id VARCHAR(128) NOT NULL,
                updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
                confirmed_at TIMESTAMP WITH TIME ZONE,
                PRIMARY KEY (vin, manufacturer_campaign_reference)
            )""",
            "CREATE INDEX ledger_by_state ON ledger (state, vin, manufacturer_campaign_reference)",
            """CREATE TABLE batches (
                id VARCHAR(32) NOT NULL PRIMARY KEY,
                kind VARCHAR(32) NOT NULL,
                status VARCHAR(16) NOT NULL,
                source TEXT,
                created_at TIMESTAMP WITH TIME ZONE NOT NULL,
                updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
                rejected INTEGER NOT NULL DEFAULT 0,
                skipped INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE batch_commands (
                message_id VARCHAR(128) NOT NULL PRIMARY KEY,
                batch_id VARCHAR(32) NOT NULL REFERENCES batches (id),
                verb VARCHAR(8) NOT NULL,
                vin VARCHAR(17) NOT NULL,
                manufacturer_campaign_reference VARCHAR(49),
                published BOOLEAN NOT NULL DEFAULT FALSE,
                result VARCHAR(16),
                reason TEXT,
                dvsa_status INTEGER,
                recalls TEXT,
                completed_at TIMESTAMP WITH TIME ZONE
            )""",
            "CREATE INDEX batch_commands_by_batch ON batch_commands (batch_id, published, result)",
        ),
    ),
    Migration(
        2,
        "batch API: api keys, batch webhooks and owners, the cache of checks",
        (
            """CREATE TABLE api_keys (
                id VARCHAR(16) NOT NULL PRIMARY KEY,
                name VARCHAR(100) NOT NULL,
                key_hash VARCHAR(64) NOT NULL,
                created_at TIMESTAMP WITH TIME ZONE NOT NULL,
                revoked_at TIMESTAMP WITH TIME ZONE
            )""",
            # SQLite adds one column per ALTER TABLE.
            "ALTER TABLE batches ADD COLUMN webhook_url TEXT",
            "ALTER TABLE batches ADD COLUMN owner VARCHAR(16)",
            "ALTER TABLE batches ADD COLUMN completed_at TIMESTAMP WITH TIME ZONE",
            "ALTER TABLE batches ADD COLUMN error_message TEXT",
            "CREATE INDEX batches_by_age ON batches (created_at)",
            "ALTER TABLE batch_commands ADD COLUMN has_recalls BOOLEAN",
            """CREATE TABLE vin_checks (
                vin VARCHAR(17) NOT NULL PRIMARY KEY,
                checked_at TIMESTAMP WITH TIME ZONE NOT NULL,
                recalls TEXT NOT NULL
            )""",
            """CREATE TABLE webhook_deliveries (
                batch_id VARCHAR(32) NOT NULL PRIMARY KEY REFERENCES batches (id),
                url TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
                delivered_at TIMESTAMP WITH TIME ZONE,
                gave_up BOOLEAN NOT NULL DEFAULT FALSE,
                last_error TEXT
            )""",
            "CREATE INDEX webhook_deliveries_by_due ON webhook_deliveries (next_attempt_at)",
        ),
    ),
    Migration(
        3,
        "ledger: when the command behind an entry's last change was issued",
        ("ALTER TABLE ledger ADD COLUMN issued_at TIMESTAMP WITH TIME ZONE",),
    ),
    Migration(
        4,
        "api keys: scopes, and a webhook secret of their own",
        (
            "ALTER TABLE api_keys ADD COLUMN scopes VARCHAR(64) NOT NULL DEFAULT 'batch'",
            "ALTER TABLE api_keys ADD COLUMN webhook_secret VARCHAR(128)",
        ),
    ),
    Migration(
        5,
        "dashboard sign-in sessions",
        (
            """CREATE TABLE sessions (
                token_hash VARCHAR(64) NOT NULL PRIMARY KEY,
                key_id VARCHAR(16) NOT NULL REFERENCES api_keys (id),
                created_at TIMESTAMP WITH TIME ZONE NOT NULL,
                expires_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
            "CREATE INDEX sessions_by_expiry ON sessions (expires_at)",
        ),
    ),
    Migration(
        6,
        "batch checks: a lease on their publishing; batches by key and by state",
        (
            "ALTER TABLE batches ADD COLUMN lease_until TIMESTAMP WITH TIME ZONE",
            "CREATE INDEX batches_by_owner ON batches (owner, created_at)",
            "CREATE INDEX batches_by_status ON batches (status, lease_until)",
        ),
    ),
    Migration(
        7,
        "ledger: entries by when they last changed, for reconcile --since",
        # IF NOT EXISTS: on a large PostgreSQL ledger an operator may build it beforehand with CREATE
        # INDEX CONCURRENTLY (docs/operations.md), which this plain CREATE INDEX would block writes for.
        ("CREATE INDEX IF NOT EXISTS ledger_by_change ON ledger (updated_at, vin)",),
    ),
)


async def apply_migrations(
    connection: AsyncConnection, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Apply the migrations ``connection``'s database lacks, inside its open transaction; their versions."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    await connection.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, "
            "applied_at TIMESTAMP WITH TIME ZONE NOT NULL)"
        )
    )
    versions = await connection.execute(text("SELECT version FROM schema_migrations"))
    applied: set[int] = set(versions.scalars())
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            continue
        for statement in migration.statements:
            await connection.execute(text(statement))
        await connection.execute(
            text(
                "INSERT INTO schema_migrations (version, name, applied_at) "
                "VALUES (:version, :name, CURRENT_TIMESTAMP)"
            ),
            {"version": migration.version, "name": migration.name},
        )
        done.append(migration.version)
    return done
