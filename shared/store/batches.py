"""Batch jobs (an import, a sync, a batch check): the journal of their commands and their progress.

A producer starts a batch, *claims* each chunk of commands before publishing it (the journal row, keyed
by the command's message_id, is what makes a re-run publish nothing twice), marks them published once
the broker confirmed them, and closes publishing.  The event recorder then *records* each command's
outcome; the batch completes when every published command has one.  Completion is decided under the
batch row's lock, so the last outcome and the close of publishing cannot both miss it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import msgspec
from sqlalchemy import ColumnElement, and_, bindparam, case, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import Command, OutcomeEvent, utc_now
from shared.store.database import Database
from shared.store.tables import batch_commands, batches

BatchState = Literal["publishing", "running", "completed", "failed", "cancelled"]
FAILURE_SAMPLE = 20
_PAGE = 1000
_RESULT_COLUMNS = (
    "message_id",
    "vin",
    "verb",
    "manufacturer_campaign_reference",
    "result",
    "reason",
    "dvsa_status",
    "recalls",
)


@dataclass(frozen=True)
class BatchStatus:
    id: str
    kind: str
    status: BatchState
    source: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    total: int
    processed: int
    succeeded: int
    already_applied: int
    failed: int
    rejected: int
    skipped: int
    failures: list[dict[str, Any]]


class Batches:
    """Starts, journals, tracks and reports batch jobs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, kind: str, source: str | None) -> str:
        batch_id = uuid.uuid4().hex
        now = utc_now()
        row = {"id": batch_id, "kind": kind, "status": "publishing", "source": source}
        async with self._db.writing() as connection:
            await connection.execute(batches.insert().values(**row, created_at=now, updated_at=now))
        return batch_id

    async def claim(self, batch_id: str, commands: Sequence[Command]) -> list[Command]:
        """Journal ``commands``; those to publish now, in order (new, or left unpublished by a past run)."""
        ids = list(dict.fromkeys(command.message_id for command in commands))
        if not ids:
            return []
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        rows = [_journal_row(batch_id, command) for command in commands]
        journal = batch_commands.c
        insert = dialect.insert(batch_commands).on_conflict_do_nothing().returning(journal.message_id)
        async with self._db.writing() as connection:
            to_publish: set[str] = set((await connection.execute(insert, rows)).scalars())
            known = [message_id for message_id in ids if message_id not in to_publish]
            if known:  # journaled before: only a left-over of an interrupted run is published again
                unpublished = and_(journal.message_id.in_(known), journal.published.is_(False))
                # It is published by this batch now, so it counts here.
                moved = update(batch_commands).where(unpublished, journal.batch_id != batch_id)
                await connection.execute(moved.values(batch_id=batch_id))
                due = await connection.execute(select(journal.message_id).where(unpublished))
                to_publish.update(due.scalars())
        claimed: list[Command] = []
        for command in commands:
            if command.message_id in to_publish:
                to_publish.discard(command.message_id)  # a repeated id is published once
                claimed.append(command)
        return claimed

    async def published(self, message_ids: Sequence[str]) -> None:
        """The broker confirmed these commands."""
        ids = list(message_ids)
        async with self._db.writing() as connection:
            for start in range(0, len(ids), _PAGE):
                page = batch_commands.c.message_id.in_(ids[start : start + _PAGE])
                await connection.execute(update(batch_commands).where(page).values(published=True))

    async def close_publishing(
        self, batch_id: str, *, rejected: int, skipped: int, cancelled: bool = False
    ) -> None:
        """Publishing is over: the batch runs (or is cancelled), and completes if nothing is pending."""
        values = {"status": "cancelled" if cancelled else "running", "rejected": rejected, "skipped": skipped}
        async with self._db.writing() as connection:
            await connection.execute(
                update(batches).where(batches.c.id == batch_id).values(**values, updated_at=utc_now())
            )
            await _complete_if_done(connection, batch_id)

    async def record(self, *events: OutcomeEvent) -> None:
        """Store each command's outcome (the first one only), completing a batch with its last one.

        All in one transaction: one query finds which events are a batch's commands still waiting for
        their outcome (most events are not), one statement stores those, then each batch touched is
        locked once, in id order so that two consumers cannot deadlock.
        """
        journal = batch_commands.c
        async with self._db.writing() as connection:
            waiting: dict[str, str] = {}
            ids = sorted({event.message_id for event in events})
            for start in range(0, len(ids), _PAGE):
                page = ids[start : start + _PAGE]
                query = select(journal.message_id, journal.batch_id).where(
                    journal.message_id.in_(page), journal.result.is_(None)
                )
                waiting.update((row.message_id, row.batch_id) for row in await connection.execute(query))
            outcomes = [_outcome(event) for event in events if event.message_id in waiting]
            if not outcomes:
                return
            # A repeated message_id's later outcome finds the result set and changes nothing.
            await connection.execute(_STORE_OUTCOME, sorted(outcomes, key=lambda row: row["m_id"]))
            for batch_id in sorted(set(waiting.values())):
                await _lock(connection, batch_id)
                await _complete_if_done(connection, batch_id)

    async def status(self, batch_id: str) -> BatchStatus | None:
        async with self._db.reading() as connection:
            batch = (await connection.execute(select(batches).where(batches.c.id == batch_id))).first()
            if batch is None:
                return None
            counts = (await connection.execute(_counts(batch_id))).one()
            failures = await _failures(connection, batch_id)
        return BatchStatus(
            id=batch.id,
            kind=batch.kind,
            status=cast(BatchState, batch.status),
            source=batch.source,
            created_at=batch.created_at,
            updated_at=batch.updated_at,
            total=int(counts.total or 0),
            processed=int(counts.processed or 0),
            succeeded=int(counts.succeeded or 0),
            already_applied=int(counts.already_applied or 0),
            failed=int(counts.failed or 0),
            rejected=batch.rejected,
            skipped=batch.skipped,
            failures=failures,
        )

    async def results(self, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        """Every published command of the batch with its outcome so far, by message_id, a page at a time."""
        columns = [batch_commands.c[name] for name in _RESULT_COLUMNS]
        after = ""
        while True:
            query = (
                select(*columns)
                .where(_published_in(batch_id), batch_commands.c.message_id > after)
                .order_by(batch_commands.c.message_id)
                .limit(_PAGE)
            )
            async with self._db.reading() as connection:
                page = [row._asdict() for row in await connection.execute(query)]
            for row in page:
                recalls = row["recalls"]
                yield {**row, "recalls": None if recalls is None else msgspec.json.decode(recalls)}
            if len(page) < _PAGE:
                return
            after = page[-1]["message_id"]


_OUTCOME_COLUMNS = ("result", "reason", "dvsa_status", "recalls", "completed_at")
_STORE_OUTCOME = (
    update(batch_commands)
    .where(batch_commands.c.message_id == bindparam("m_id"), batch_commands.c.result.is_(None))
    # published: an outcome proves it, even if the publisher died before saying so
    .values(published=True, **{name: bindparam(f"m_{name}") for name in _OUTCOME_COLUMNS})
)


def _outcome(event: OutcomeEvent) -> dict[str, Any]:
    """``_STORE_OUTCOME``'s parameters for ``event``."""
    return {
        "m_id": event.message_id,
        "m_result": event.result,
        "m_reason": event.reason,
        "m_dvsa_status": event.dvsa_status,
        "m_recalls": None if event.recalls is None else msgspec.json.encode(event.recalls).decode(),
        "m_completed_at": event.completed_at,
    }


def _journal_row(batch_id: str, command: Command) -> dict[str, Any]:
    return {
        "message_id": command.message_id,
        "batch_id": batch_id,
        "verb": command.verb,
        "vin": command.vin,
        "manufacturer_campaign_reference": command.manufacturer_campaign_reference,
        "published": False,
    }


def _published_in(batch_id: str) -> ColumnElement[bool]:
    return and_(batch_commands.c.batch_id == batch_id, batch_commands.c.published.is_(True))


def _counts(batch_id: str) -> Any:
    result = batch_commands.c.result

    def having(condition: ColumnElement[bool]) -> Any:
        return func.count(case((condition, 1)))

    return select(
        func.count().label("total"),
        having(result.is_not(None)).label("processed"),
        having(result == "applied").label("succeeded"),
        having(result == "already_applied").label("already_applied"),
        having(result == "failed").label("failed"),
    ).where(_published_in(batch_id))


async def _failures(connection: AsyncConnection, batch_id: str) -> list[dict[str, Any]]:
    query = (
        select(batch_commands.c.message_id, batch_commands.c.vin, batch_commands.c.reason)
        .where(_published_in(batch_id), batch_commands.c.result == "failed")
        .order_by(batch_commands.c.completed_at, batch_commands.c.message_id)
        .limit(FAILURE_SAMPLE)
    )
    return [row._asdict() for row in await connection.execute(query)]


async def _lock(connection: AsyncConnection, batch_id: str) -> None:
    """Take the batch row's lock (PostgreSQL), as close_publishing does, to decide completion in turn."""
    await connection.execute(update(batches).where(batches.c.id == batch_id).values(updated_at=utc_now()))


async def _complete_if_done(connection: AsyncConnection, batch_id: str) -> None:
    pending = exists().where(_published_in(batch_id), batch_commands.c.result.is_(None))
    await connection.execute(
        update(batches)
        .where(batches.c.id == batch_id, batches.c.status == "running", ~pending)
        .values(status="completed", updated_at=utc_now())
    )
