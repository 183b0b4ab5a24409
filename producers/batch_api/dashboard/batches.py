"""A key's most recent batch checks with their progress, in two queries whatever their number.

``shared.store.batches.Batches.status`` reads one batch (with a sample of failures); the dashboard
polls every second for up to :data:`RECENT` of them, so it reads the batch rows in one query and the
journal's counts of all of them in one grouped query, as the same :class:`BatchStatus` the API shows.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, case, func, select

from shared.store.batches import BatchState, BatchStatus
from shared.store.database import Database
from shared.store.tables import batch_commands, batches

RECENT = 20


async def recent_batches(db: Database, owner: str, limit: int = RECENT) -> list[BatchStatus]:
    """The ``limit`` batches of the key ``owner``, newest first."""
    newest = select(batches).where(batches.c.owner == owner).order_by(batches.c.created_at.desc())
    async with db.reading() as connection:
        rows = (await connection.execute(newest.limit(limit))).all()
        counts: dict[str, Any] = {}
        if rows:
            grouped = await connection.execute(_counts([row.id for row in rows]))
            counts = {row.batch_id: row for row in grouped}
    return [_status(row, counts.get(row.id)) for row in rows]


def _counts(batch_ids: list[str]) -> Any:
    journal = batch_commands.c

    def having(condition: ColumnElement[bool]) -> Any:
        return func.count(case((condition, 1)))

    return (
        select(
            journal.batch_id,
            func.count().label("total"),
            having(journal.result.is_not(None)).label("processed"),
            having(journal.result == "applied").label("succeeded"),
            having(journal.result == "already_applied").label("already_applied"),
            having(journal.result == "failed").label("failed"),
            having(journal.has_recalls.is_(True)).label("hits"),
        )
        .where(journal.batch_id.in_(batch_ids), journal.published.is_(True))
        .group_by(journal.batch_id)
    )


def _status(batch: Any, counts: Any) -> BatchStatus:
    def count(name: str) -> int:
        return int(getattr(counts, name, 0) or 0)

    return BatchStatus(
        id=batch.id,
        kind=batch.kind,
        status=cast(BatchState, batch.status),
        source=batch.source,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        total=count("total"),
        processed=count("processed"),
        succeeded=count("succeeded"),
        already_applied=count("already_applied"),
        failed=count("failed"),
        rejected=batch.rejected,
        skipped=batch.skipped,
        failures=[],  # the dashboard shows progress, not the failures
        webhook_url=batch.webhook_url,
        owner=batch.owner,
        completed_at=batch.completed_at,
        error_message=batch.error_message,
        hits=count("hits"),
    )
