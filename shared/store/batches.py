"""Batch jobs (an import, a sync, a batch check): the journal of their commands and their progress.

A producer starts a batch, *claims* each chunk of commands before publishing it (the journal row, keyed
by the command's message_id, is what makes a re-run publish nothing twice), marks them published once
the broker confirmed them, and closes publishing.  The event recorder then *records* each command's
outcome; the batch completes when every published command has one.  Completion is decided under the
batch row's lock, so the last outcome and the close of publishing cannot both miss it.

A batch check (the batch API's job, kind ``check``) also journals the answers the cache of checks
holds, as outcomes, may end in failure with a message (:meth:`Batches.fail`), and, when it was given a
webhook URL, owes one webhook call once it ends: a ``webhook_deliveries`` row written in the
transaction that ends it, which a sender takes with :meth:`Batches.due_webhooks` and settles with
:meth:`Batches.webhook_delivered` or :meth:`Batches.webhook_failed`.  Old batch checks are removed with
:meth:`Batches.purge`.

A batch check is started with its whole journal in one transaction (:meth:`Batches.start_check`), so
one that exists has every VIN journaled, and within the quota of its key, counted under that key's
lock from the batches themselves: what several API processes share is the store.  Its publishing is
*leased* to the process that started it, which renews the lease while it publishes; a batch still
publishing when its lease has run out lost its publisher, and :meth:`Batches.take_over` hands it to
one other process.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, cast

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from recalls.shared.contracts import Command, GetCommand, OutcomeEvent, Recall, utc_now
from recalls.shared.message_ids import content_id
from recalls.shared.store.database import Database
from recalls.shared.store.tables import api_keys, batch_commands, batches, webhook_deliveries

BatchState = Literal["publishing", "running", "completed", "failed", "cancelled"]
OPEN_STATES: tuple[BatchState, ...] = ("publishing", "running")
CHECK_KIND = "check"  # the batch API's jobs: the only kind purge removes unless told otherwise
FAILURE_SAMPLE = 20
# How long a webhook handed out by due_webhooks is not handed out again: longer than one delivery takes.
WEBHOOK_LEASE = dt.timedelta(minutes=5)
_ERROR_CHARS = 1000
_PAGE = 1000
RESULT_COLUMNS = (
    "message_id",
    "vin",
    "verb",
    "manufacturer_campaign_reference",
    "result",
    "reason",
    "dvsa_status",
    "recalls",
    "has_recalls",
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
    webhook_url: str | None
    owner: str | None
    completed_at: dt.datetime | None
    error_message: str | None
    hits: int  # checks whose answer holds a recall not FIXED


@dataclass(frozen=True)
class KeyUsage:
    """What an API key had under way ``at`` a moment: its batches started in a window before, those open."""

    at: dt.datetime
    started: tuple[dt.datetime, ...]  # oldest first
    open: int


@dataclass(frozen=True)
class Admission:
    """The gate on a key's new batch: ``check`` is shown the key's usage over ``window``; raising refuses."""

    window: dt.timedelta
    check: Callable[[KeyUsage], None]


@dataclass(frozen=True)
class WebhookDue:
    """A webhook call to make now; ``attempts``: how many were made before."""

    batch_id: str
    url: str
    attempts: int


class Batches:
    """Starts, journals, tracks and reports batch jobs."""

    def __init__(self, db: Database, *, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def start(
        self, kind: str, source: str | None, *, webhook_url: str | None = None, owner: str | None = None
    ) -> str:
        """A new batch, publishing; ``owner``: the id of its API key; ``webhook_url``: told when it ends."""
        batch_id = uuid.uuid4().hex
        now = self._clock()
        row = {
            "id": batch_id,
            "kind": kind,
            "status": "publishing",
            "source": source,
            "webhook_url": webhook_url,
            "owner": owner,
        }
        async with self._db.writing() as connection:
            await connection.execute(batches.insert().values(**row, created_at=now, updated_at=now))
        return batch_id

    async def start_check(
        self,
        vins: Sequence[str],
        cached: Mapping[str, list[Recall]],
        *,
        owner: str,
        webhook_url: str | None,
        lease: dt.timedelta,
        admission: Admission,
    ) -> str:
        """A new batch check of ``vins`` (distinct, upper-case) for the key ``owner``, journaled whole.

        The VINs in ``cached`` are journaled with the cache's answers, the others as gets to publish,
        leased to the caller for ``lease`` (:meth:`renew` keeps it); with none to publish the batch
        completes at once.  ``admission`` sees the key's usage under the key's row lock (PostgreSQL;
        SQLite has one writer at a time), so two submits of one key are counted in turn, however many
        processes serve them; what it raises leaves nothing behind.
        """
        batch_id = uuid.uuid4().hex
        unpublished = [
            _journal_row(batch_id, check_command(batch_id, vin)) for vin in vins if vin not in cached
        ]
        row = {
            "id": batch_id,
            "kind": CHECK_KIND,
            "status": "publishing" if unpublished else "running",
            "source": "api",
            "webhook_url": webhook_url,
            "owner": owner,
        }

        def start(connection: Connection) -> None:
            connection.execute(select(api_keys.c.id).where(api_keys.c.id == owner).with_for_update())
            now = self._clock()  # once the lock is held: the batches counted all started before
            admission.check(_usage(connection, owner, now, admission.window))
            times = {"created_at": now, "updated_at": now, "lease_until": now + lease}
            connection.execute(batches.insert().values(**row, **times))
            journal = [_cached_row(batch_id, vin, recalls, now) for vin, recalls in cached.items()]
            for rows in (journal, unpublished):  # apart: one executemany takes rows of one shape
                if rows:
                    connection.execute(batch_commands.insert(), rows)
            if not unpublished:
                _complete_if_done(connection, batch_id, now)

        await self._db.run(start, write=True)
        return batch_id

    async def usage(self, owner: str, window: dt.timedelta) -> KeyUsage:
        """What the key ``owner`` has under way now: its batches started within ``window``, and those open."""
        return await self._db.run(partial(_usage, owner=owner, at=self._clock(), window=window), write=False)

    async def unpublished_checks(self, batch_id: str, limit: int) -> list[GetCommand]:
        """Up to ``limit`` of a batch check's gets not yet published, by message_id."""
        journal = batch_commands.c
        query = (
            select(journal.message_id, journal.vin)
            .where(journal.batch_id == batch_id, journal.published.is_(False))
            .order_by(journal.message_id)
            .limit(limit)
        )
        async with self._db.reading() as connection:
            rows = (await connection.execute(query)).all()
        return [check_command(batch_id, row.vin, row.message_id) for row in rows]

    async def renew(self, batch_id: str, lease: dt.timedelta) -> None:
        """The caller still publishes the batch: its lease runs ``lease`` from now."""
        publishing = and_(batches.c.id == batch_id, batches.c.status == "publishing")
        async with self._db.writing() as connection:
            await connection.execute(
                update(batches).where(publishing).values(lease_until=self._clock() + lease)
            )

    async def take_over(self, lease: dt.timedelta) -> list[str]:
        """The batch checks still publishing whose lease ran out, now leased to the caller for ``lease``.

        One statement takes them, so each goes to one caller however many ask at once: on PostgreSQL
        a second update waits for the first's row lock, then finds the lease renewed; SQLite has one
        writer at a time.  A batch from before leases (none set) is taken too.
        """
        now = self._clock()
        lapsed = or_(batches.c.lease_until.is_(None), batches.c.lease_until < now)
        orphaned = and_(batches.c.kind == CHECK_KIND, batches.c.status == "publishing", lapsed)
        taking = update(batches).where(orphaned).values(lease_until=now + lease).returning(batches.c.id)
        return await self._db.run(lambda connection: list(connection.execute(taking).scalars()), write=True)

    async def claim(self, batch_id: str, commands: Sequence[Command]) -> list[Command]:
        """Journal ``commands``; those to publish now, in order (new, or left unpublished by a past run)."""
        ids = list(dict.fromkeys(command.message_id for command in commands))
        if not ids:
            return []
        rows = [_journal_row(batch_id, command) for command in commands]
        journal = batch_commands.c
        async with self._db.writing() as connection:
            new = _insert_new(connection, batch_commands).returning(journal.message_id)
            to_publish: set[str] = set((await connection.execute(new, rows)).scalars())
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
        """Publishing is over: the batch runs (or is cancelled), and completes if nothing is pending.

        Only a batch still publishing is changed: one that has ended (failed, say) stays as it is.
        """
        values = {"status": "cancelled" if cancelled else "running", "rejected": rejected, "skipped": skipped}
        now = self._clock()
        publishing = and_(batches.c.id == batch_id, batches.c.status == "publishing")

        def close(connection: Connection) -> None:
            connection.execute(update(batches).where(publishing).values(**values, updated_at=now))
            _complete_if_done(connection, batch_id, now)

        await self._db.run(close, write=True)

    async def fail(self, batch_id: str, message: str) -> None:
        """A batch still publishing or running ends as failed, saying why (and calls its webhook, if any)."""
        now = self._clock()
        ending = (
            update(batches)
            .where(batches.c.id == batch_id, batches.c.status.in_(("publishing", "running")))
            .values(status="failed", error_message=message, updated_at=now, completed_at=now)
            .returning(batches.c.webhook_url)
        )
        await self._db.run(
            lambda connection: _webhook_due(connection, batch_id, connection.execute(ending).scalar(), now),
            write=True,
        )

    async def record(self, *events: OutcomeEvent) -> bool:
        """:meth:`record_within` in a transaction of its own."""
        return await self._db.run(partial(self.record_within, events=events), write=True)

    def record_within(self, connection: Connection, events: Sequence[OutcomeEvent]) -> bool:
        """Store each command's outcome (the first one only), completing a batch with its last one.

        One query finds which events are a batch's commands still waiting for their outcome (most events
        are not), one statement stores those, then each batch touched is locked once, in id order so
        that two consumers cannot deadlock.  A get's outcome also says whether its answer holds a recall
        that is not FIXED (``has_recalls``).  True if a batch ended (its webhook may be due).
        """
        journal = batch_commands.c
        waiting: dict[str, str] = {}
        ids = sorted({event.message_id for event in events})
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            query = select(journal.message_id, journal.batch_id).where(
                journal.message_id.in_(page), journal.result.is_(None)
            )
            waiting.update((row.message_id, row.batch_id) for row in connection.execute(query))
        outcomes = [_outcome(event) for event in events if event.message_id in waiting]
        if not outcomes:
            return False
        # A repeated message_id's later outcome finds the result set and changes nothing.
        connection.execute(_STORE_OUTCOME, sorted(outcomes, key=lambda row: row["m_id"]))
        now = self._clock()
        ended = False
        for batch_id in sorted(set(waiting.values())):
            _lock(connection, batch_id, now)
            ended = _complete_if_done(connection, batch_id, now) or ended
        return ended

    async def status(self, batch_id: str) -> BatchStatus | None:
        async with self._db.reading() as connection:
            batch = (await connection.execute(select(batches).where(batches.c.id == batch_id))).first()
            if batch is None:
                return None
            counts = (await connection.execute(_counts([batch_id]))).first()
            failures = await _failures(connection, batch_id)
        return _status_of(batch, counts, failures)

    async def recent(self, owner: str, limit: int) -> list[BatchStatus]:
        """The ``limit`` newest batches of the key ``owner``, in two queries (no failure samples)."""
        newest = select(batches).where(batches.c.owner == owner).order_by(batches.c.created_at.desc())
        async with self._db.reading() as connection:
            rows = (await connection.execute(newest.limit(limit))).all()
            counts: dict[str, Any] = {}
            if rows:
                grouped = await connection.execute(_counts([row.id for row in rows]))
                counts = {row.batch_id: row for row in grouped}
        return [_status_of(row, counts.get(row.id), []) for row in rows]

    async def results(
        self, batch_id: str, *, columns: Sequence[str] = RESULT_COLUMNS
    ) -> AsyncIterator[dict[str, Any]]:
        """Every published command of the batch with its outcome so far, by message_id, a page at a time.

        ``columns``: of the journal, ``recalls`` decoded from JSON.
        """
        selected = [batch_commands.c[name] for name in columns]
        after = ""
        while True:
            query = (
                select(*selected)
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

    async def due_webhooks(
        self, now: dt.datetime, limit: int, *, lease: dt.timedelta = WEBHOOK_LEASE
    ) -> list[WebhookDue]:
        """Up to ``limit`` webhook calls due at ``now``, oldest first, each leased to the caller.

        A call handed out is not handed out again for ``lease`` (unless settled before), so that a
        sender polling while it delivers, or a second sender, does not call twice; one whose sender
        died is handed out again when the lease ends.
        """
        calls = webhook_deliveries.c
        due = and_(calls.delivered_at.is_(None), calls.gave_up.is_(False), calls.next_attempt_at <= now)
        query = (
            select(calls.batch_id, calls.url, calls.attempts)
            .where(due)
            .order_by(calls.next_attempt_at, calls.batch_id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL: two senders take different calls
        )
        async with self._db.writing() as connection:
            rows = await connection.execute(query)
            taken = [WebhookDue(row.batch_id, row.url, row.attempts) for row in rows]
            if taken:
                leased = calls.batch_id.in_([call.batch_id for call in taken])
                await connection.execute(
                    update(webhook_deliveries).where(leased).values(next_attempt_at=now + lease)
                )
        return taken

    async def webhook_delivered(self, batch_id: str, at: dt.datetime) -> None:
        """The batch's webhook call succeeded ``at``."""
        await self._settle(batch_id, delivered_at=at)

    async def webhook_failed(self, batch_id: str, error: str, next_attempt_at: dt.datetime | None) -> None:
        """The batch's webhook call failed: try again at ``next_attempt_at`` (``None``: give up)."""
        again = {"gave_up": True} if next_attempt_at is None else {"next_attempt_at": next_attempt_at}
        await self._settle(batch_id, last_error=error[:_ERROR_CHARS], **again)

    async def _settle(self, batch_id: str, **values: Any) -> None:
        calls = webhook_deliveries.c
        pending = and_(calls.batch_id == batch_id, calls.delivered_at.is_(None), calls.gave_up.is_(False))
        async with self._db.writing() as connection:
            await connection.execute(
                update(webhook_deliveries).where(pending).values(attempts=calls.attempts + 1, **values)
            )

    async def purge(self, older_than: dt.datetime, *, kinds: Collection[str] = (CHECK_KIND,)) -> int:
        """Remove the batches of ``kinds`` created before ``older_than``, with their journal and webhook call.

        Only batch checks by default: the journal of an import or a sync is what keeps a re-run of the
        same file from publishing again, however old.  The number of batches removed.
        """
        old = select(batches.c.id).where(batches.c.created_at < older_than, batches.c.kind.in_(list(kinds)))
        async with self._db.writing() as connection:
            await connection.execute(delete(webhook_deliveries).where(webhook_deliveries.c.batch_id.in_(old)))
            await connection.execute(delete(batch_commands).where(batch_commands.c.batch_id.in_(old)))
            removed = await connection.execute(delete(batches).where(batches.c.id.in_(old)))
        return removed.rowcount


def check_message_id(batch_id: str, vin: str) -> str:
    """The message id of batch ``batch_id``'s check of ``vin`` (an upper-case VIN)."""
    return content_id(f"check|{batch_id}|{vin}")


def check_command(batch_id: str, vin: str, message_id: str | None = None) -> GetCommand:
    """Batch ``batch_id``'s get of ``vin``, correlated to the batch (``message_id``: as journaled)."""
    return GetCommand(
        vin=vin, correlation_id=batch_id, message_id=message_id or check_message_id(batch_id, vin)
    )


def _usage(connection: Connection, owner: str, at: dt.datetime, window: dt.timedelta) -> KeyUsage:
    mine = batches.c.owner == owner
    started = select(batches.c.created_at).where(mine, batches.c.created_at > at - window)
    still_open = select(func.count()).where(mine, batches.c.status.in_(OPEN_STATES))
    return KeyUsage(
        at=at,
        started=tuple(connection.execute(started.order_by(batches.c.created_at)).scalars()),
        open=connection.execute(still_open).scalar_one(),
    )


def _has_recalls(recalls: Sequence[Recall] | None) -> bool | None:
    """Whether an answer holds a recall still to repair (``None``: no answer)."""
    if recalls is None:
        return None
    return any(recall.repair_status != "FIXED" for recall in recalls)


def _encode(recalls: Sequence[Recall] | None) -> str | None:
    return None if recalls is None else msgspec.json.encode(recalls).decode()


def _cached_row(batch_id: str, vin: str, recalls: list[Recall], checked_at: dt.datetime) -> dict[str, Any]:
    vin = vin.upper()
    return {
        "message_id": check_message_id(batch_id, vin),
        "batch_id": batch_id,
        "verb": "get",
        "vin": vin,
        "manufacturer_campaign_reference": None,
        "published": True,
        "result": "applied",
        "reason": "cached",
        "dvsa_status": None,
        "recalls": _encode(recalls),
        "has_recalls": _has_recalls(recalls),
        "completed_at": checked_at,
    }


_OUTCOME_COLUMNS = ("result", "reason", "dvsa_status", "recalls", "completed_at", "has_recalls")
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
        "m_recalls": _encode(event.recalls),
        "m_completed_at": event.completed_at,
        "m_has_recalls": _has_recalls(event.recalls) if event.verb == "get" else None,
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


def _counts(batch_ids: list[str]) -> Any:
    """Per batch: its published commands, and how many have each outcome so far."""
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


def _status_of(batch: Any, counts: Any, failures: list[dict[str, Any]]) -> BatchStatus:
    """A batch row and its counts (None: nothing published yet) as a :class:`BatchStatus`."""

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
        failures=failures,
        webhook_url=batch.webhook_url,
        owner=batch.owner,
        completed_at=batch.completed_at,
        error_message=batch.error_message,
        hits=count("hits"),
    )


async def _failures(connection: AsyncConnection, batch_id: str) -> list[dict[str, Any]]:
    query = (
        select(batch_commands.c.message_id, batch_commands.c.vin, batch_commands.c.reason)
        .where(_published_in(batch_id), batch_commands.c.result == "failed")
        .order_by(batch_commands.c.completed_at, batch_commands.c.message_id)
        .limit(FAILURE_SAMPLE)
    )
    return [row._asdict() for row in await connection.execute(query)]


def _lock(connection: Connection, batch_id: str, now: dt.datetime) -> None:
    """Take the batch row's lock (PostgreSQL), as close_publishing does, to decide completion in turn."""
    connection.execute(update(batches).where(batches.c.id == batch_id).values(updated_at=now))


def _complete_if_done(connection: Connection, batch_id: str, now: dt.datetime) -> bool:
    """A running batch with no outcome pending completes (and owes its webhook call, if it has one).

    True if it did.
    """
    pending = exists().where(_published_in(batch_id), batch_commands.c.result.is_(None))
    completing = (
        update(batches)
        .where(batches.c.id == batch_id, batches.c.status == "running", ~pending)
        .values(status="completed", updated_at=now, completed_at=now)
        .returning(batches.c.webhook_url)
    )
    ended = connection.execute(completing).first()
    if ended is not None:
        _webhook_due(connection, batch_id, ended.webhook_url, now)
    return ended is not None


def _webhook_due(connection: Connection, batch_id: str, url: str | None, now: dt.datetime) -> None:
    """The batch just ended: its webhook call, if it has a URL, is due now."""
    if url is not None:
        row = {"batch_id": batch_id, "url": url, "attempts": 0, "next_attempt_at": now, "gave_up": False}
        # A batch ends once; were it ever to end again, the call owed stays the one already there.
        connection.execute(_insert_new(connection, webhook_deliveries).values(**row))


def _insert_new(connection: Connection | AsyncConnection, table: Table) -> Any:
    """An insert into ``table`` that leaves a row already there (by primary key) as it is."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
