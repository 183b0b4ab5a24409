"""``recalls migrate``: apply the store's schema migrations that this version has and the store lacks."""

from __future__ import annotations

import click

from recalls.cli import errors
from recalls.cli.output import json_option, print_json
from recalls.cli.store import with_store
from recalls.shared.store.database import Database, store_location
from recalls.shared.store.migrations import MIGRATIONS


@click.command()
@json_option
def migrate(as_json: bool) -> None:
    """Bring the store's schema up to this version (safe to repeat; run it before a rollout).

    Workers, the batch API and the commands that write refuse a PostgreSQL store that lacks a migration
    (RECALLS_MIGRATE_ON_START: unset, only the embedded SQLite store is migrated at start).  Migrations
    are applied in one transaction, one runner at a time, so concurrent runs are harmless.
    """
    settings = errors.settings()

    async def apply(db: Database) -> list[int]:
        return await db.migrate()

    applied = with_store(settings, apply, opening=Database.opened)
    version = max(migration.version for migration in MIGRATIONS)
    where = store_location(settings)
    if as_json:
        print_json({"store": where, "applied": applied, "schema_version": version})
        return
    if applied:
        click.echo(f"{where}: applied schema version(s) {', '.join(map(str, applied))}; now at {version}")
    else:
        click.echo(f"{where}: already at schema version {version}")
