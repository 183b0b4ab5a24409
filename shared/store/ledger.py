"""The ledger: what DVSA holds for each (vehicle, campaign), kept from the fleet's outcome events.

Events arrive at least once and, with several consumers, in any order.  Each entry remembers the
``completed_at`` of the newest event it reflects (``updated_at``, ties broken by message id), and an
entry is changed by one upsert whose ``WHERE`` lets only a newer event through: a late or repeated
event is a no-op, and every consumer ends with the same ledger whatever order it saw.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, bindparam, func, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from recalls.shared.contracts import OutcomeEvent, Recall
from recalls.shared.store.database import Database
from recalls.shared.store.tables import ledger

log = logging.getLogger("recalls.store.ledger")

State = Literal["open", "fixed", "deleted", "deleting"]  # deleting: a delete in doubt
Key = tuple[str, str]
Change = tuple[Key, dict[str, Any], OutcomeEvent]
# Given the VIN's entries: those a delete names, and those it marks (reference: entry, None if none).
Choice = Callable[[list["LedgerEntry"]], tuple[list["LedgerEntry"], dict[str, "LedgerEntry | None"]]]
_PAGE = 1000
_KEY = ("vin", "manufacturer_campaign_reference")
_KEY_COLUMNS = (ledger.c.vin, ledger.c.manufacturer_campaign_reference)


@dataclass(frozen=True)
class LedgerEntry:
    vin: str
    manufacturer_campaign_reference: str
    dvsa_campaign_reference: str | None
    state: State
    recall_campaign_start_date: dt.date | None
    rectification_date: dt.date | None
    last_message_id: str
    updated_at: dt.datetime
    confirmed_at: dt.datetime | None
    issued_at: dt.datetime | None  # None: written before this was kept


def _entry(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(**row._asdict())


class Ledger:
    """Reads and updates the ledger, each call one transaction (:meth:`Database.run`)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._statements: dict[tuple[str, ...], Any] = {}

    async def apply(self, *events: OutcomeEvent) -> None:
        """Bring the entries the events speak of up to date, unless they already reflect something newer.

        One transaction for all of them, and one statement per kind of change, each run for many rows
        at once: the recorder's cost per event stays small at the fleet's full rate.
        """
        if any(event.result != "failed" for event in events):
            await self._db.run(partial(self.apply_within, events=events), write=True)

    def apply_within(self, connection: Connection, events: Sequence[OutcomeEvent]) -> None:
        """:meth:`apply` within the caller's transaction."""
        pending: list[Change] = []
        for event in (event for event in events if event.result != "failed"):
            if _finds_entries(event):  # by looking them up: what came before must be in place
                self._upsert_all(connection, pending)
                pending = []
            pending.extend((key, values, event) for key, values in _changes(connection, event))
        self._upsert_all(connection, pending)

    def _upsert_all(self, connection: Connection, changes: list[Change]) -> None:
        for round_ in _rounds([change for change in changes if not _repeat(change[2])]):
            for columns, rows in _by_columns(round_).items():
                connection.execute(self._upsert(columns), rows)
        absent_only = self._dialect().insert(ledger).on_conflict_do_nothing()
        for rows in _by_columns([change for change in changes if _repeat(change[2])]).values():
            connection.execute(absent_only, rows)

    def _upsert(self, columns: tuple[str, ...]) -> Any:
        """The upsert that sets ``columns`` (made once per set of columns), for rows given at run time."""
        statement = self._statements.get(columns)
        if statement is None:
            insert = self._dialect().insert(ledger)
            newer = insert.excluded
            statement = self._statements[columns] = insert.on_conflict_do_update(
                index_elements=[ledger.c.vin, ledger.c.manufacturer_campaign_reference],
                set_={name: newer[name] for name in columns if name not in _KEY},
                where=or_(
                    newer.updated_at > ledger.c.updated_at,
                    and_(
                        newer.updated_at == ledger.c.updated_at,
                        newer.last_message_id > ledger.c.last_message_id,
                    ),
                ),
            )
        return statement

    def _dialect(self) -> Any:
        return postgresql if self._db.dialect == "postgresql" else sqlite

    async def mark_deleting(
        self, vin: str, references: Collection[str], *, message_id: str, issued_at: dt.datetime
    ) -> None:
        """A delete issued at ``issued_at`` may have removed these entries: DVSA did not say.

        Stamped with the delete's issue time, so what the fleet learnt later still wins, and the delete's
        own outcome, when it comes, replaces the mark.
        """
        values = {
            "state": "deleting",
            "last_message_id": message_id,
            "updated_at": issued_at,
            "issued_at": issued_at,
        }
        rows = [{"vin": vin.upper(), "manufacturer_campaign_reference": ref, **values} for ref in references]
        if rows:
            statement = self._upsert(tuple(rows[0]))
            await self._db.run(lambda connection: connection.execute(statement, rows), write=True)

    async def mark_deleting_before_sending(
        self, vin: str, choose: Choice, *, message_id: str, issued_at: dt.datetime, at: dt.datetime
    ) -> tuple[list[LedgerEntry], dict[str, LedgerEntry | None]]:
        """A delete (``message_id``) is about to be sent: mark what it removes ``deleting`` as of ``at``.

        One transaction reads the VIN's entries, asks ``choose`` which to mark (reference: its entry,
        or None where the ledger has none and one is made), and marks them; returns what ``choose`` said.
        An entry changed by another writer since the read is left alone: a newer change stands.
        """
        values = {"state": "deleting", "last_message_id": message_id, "updated_at": at}
        values["issued_at"] = issued_at
        made = self._dialect().insert(ledger).on_conflict_do_nothing()

        def mark(connection: Connection) -> tuple[list[LedgerEntry], dict[str, LedgerEntry | None]]:
            held, before = choose(_for_vin(connection, vin))
            for reference, entry in before.items():
                key = {"vin": vin.upper(), "manufacturer_campaign_reference": reference}
                if entry is None:
                    connection.execute(made, {**key, **values})
                    continue
                was = {"was_vin": entry.vin, "was_reference": reference, "was_last": entry.last_message_id}
                connection.execute(_MARK_UNCHANGED, {**was, **values})
            return held, before

        return await self._db.run(mark, write=True)

    async def unmark_deleting(
        self, vin: str, before: Mapping[str, LedgerEntry | None], *, message_id: str
    ) -> None:
        """DVSA did not apply the delete (``message_id``): its marks go, unless since replaced."""

        def unmark(connection: Connection) -> None:
            for reference, entry in before.items():
                still_marked = and_(
                    ledger.c.vin == vin.upper(),
                    ledger.c.manufacturer_campaign_reference == reference,
                    ledger.c.state == "deleting",
                    ledger.c.last_message_id == message_id,
                )
                if entry is None:
                    connection.execute(ledger.delete().where(still_marked))
                    continue
                restored = {
                    "state": entry.state,
                    "last_message_id": entry.last_message_id,
                    "updated_at": entry.updated_at,
                    "issued_at": entry.issued_at,
                }
                connection.execute(ledger.update().where(still_marked).values(restored))

        if before:
            await self._db.run(unmark, write=True)

    async def for_vin(self, vin: str) -> list[LedgerEntry]:
        return await self._db.run(partial(_for_vin, vin=vin), write=False)

    async def states(self, keys: Collection[Key]) -> dict[Key, State]:
        """The state of each of those ``(vin, manufacturer reference)`` keys the ledger holds.

        What a bulk load checks each chunk of its rows against.  Only the key and the state are read:
        building whole entries took twice as long, most of a sync plan's time (1,000,000 rows against
        as many entries: 43 s of its 81 s, 20 s now).
        """
        wanted = {(vin.upper(), reference): (vin, reference) for vin, reference in keys}
        vins = sorted({vin for vin, _ in wanted})
        query = select(*_KEY_COLUMNS, ledger.c.state)

        def read(connection: Connection) -> dict[Key, State]:
            found: dict[Key, State] = {}
            # One query per page of VINs (a VIN has few campaigns); the exact keys are picked here.
            for start in range(0, len(vins), _PAGE):
                for row in connection.execute(query.where(ledger.c.vin.in_(vins[start : start + _PAGE]))):
                    asked = wanted.get((row.vin, row.manufacturer_campaign_reference))
                    if asked is not None:
                        found[asked] = row.state
            return found

        return await self._db.run(read, write=False)

    async def open_recalls(self) -> AsyncIterator[LedgerEntry]:
        """Every open entry ordered by VIN and reference, read a page at a time."""
        after: Key | None = None
        while True:
            query = select(ledger).where(ledger.c.state == "open")
            key = tuple_(ledger.c.vin, ledger.c.manufacturer_campaign_reference)
            if after is not None:
                query = query.where(key > tuple_(*after))
            query = query.order_by(ledger.c.vin, ledger.c.manufacturer_campaign_reference).limit(_PAGE)
            page = await self._db.run(partial(_entries, query), write=False)
            for entry in page:
                yield entry
            if len(page) < _PAGE:
                return
            after = (page[-1].vin, page[-1].manufacturer_campaign_reference)

    async def vin_pages(
        self, *, only: Collection[str] = (), since: dt.datetime | None = None
    ) -> AsyncIterator[list[str]]:
        """The vehicles the ledger holds entries for, in order, a page at a time: all, or ``only`` those,
        changed ``since``.

        Without ``since``, a query per page on the key's index, each after the last VIN of the page
        before: a sweep of a national ledger holds a page, not millions of VINs (5,000,000 read at once
        took 1.4 GB).  Each page sees the ledger as it is then, so a vehicle added meanwhile behind the
        pages read waits for the next sweep.  With ``since``, one query on the index by change time
        reads them all: they are as many as the changes asked for, and a page at a time PostgreSQL
        would look for each page's few changed vehicles along the key's index, a scan of the ledger.
        """
        query = select(ledger.c.vin).distinct().order_by(ledger.c.vin)
        if only:
            query = query.where(ledger.c.vin.in_(sorted({vin.upper() for vin in only})))
        if since is not None:
            changed = await self._db.run(
                partial(_vins, query.where(ledger.c.updated_at >= since)), write=False
            )
            for start in range(0, len(changed), _PAGE):
                yield changed[start : start + _PAGE]
            return
        after = ""
        while True:
            page = await self._db.run(
                partial(_vins, query.where(ledger.c.vin > after).limit(_PAGE)), write=False
            )
            if page:
                yield page
            if len(page) < _PAGE:
                return
            after = page[-1]

    async def for_vins(self, vins: Collection[str]) -> dict[str, list[LedgerEntry]]:
        """Every entry of each of ``vins`` (upper-case), a page of VINs per query."""
        found: dict[str, list[LedgerEntry]] = {vin: [] for vin in vins}
        ordered = sorted(found)

        def read(connection: Connection) -> dict[str, list[LedgerEntry]]:
            for start in range(0, len(ordered), _PAGE):
                query = select(ledger).where(ledger.c.vin.in_(ordered[start : start + _PAGE]))
                for row in connection.execute(query.order_by(*_KEY_COLUMNS)):
                    found[row.vin].append(_entry(row))
            return found

        return await self._db.run(read, write=False)

    async def record_held(self, answer: OutcomeEvent, references: Collection[str]) -> None:
        """Write what DVSA's answer to a get says of these campaigns, as a recorded get would.

        For a sweep's answers, which the recorder leaves out of the ledger (:func:`_changes`): the
        sweep decides which of them the ledger lacks and takes only those.
        """
        recalls = [r for r in answer.recalls or [] if r.manufacturer_campaign_reference in references]
        changes = [(*change, answer) for recall in recalls if (change := _confirmed(answer, recall))]
        await self._db.run(partial(self._upsert_all, changes=changes), write=True)

    async def count_open(self) -> int:
        query = select(func.count()).where(ledger.c.state == "open")
        return await self._db.run(lambda c: int(c.scalar(query) or 0), write=False)


def _for_vin(connection: Connection, vin: str) -> list[LedgerEntry]:
    return [_entry(row) for row in connection.execute(_FOR_VIN, {"for_vin": vin.upper()})]


# Made once: a statement built per call costs more in SQLAlchemy than SQLite takes to run it.
_FOR_VIN = select(ledger).where(ledger.c.vin == bindparam("for_vin")).order_by(*_KEY_COLUMNS)
_MARK_UNCHANGED = (
    ledger.update()
    .where(
        ledger.c.vin == bindparam("was_vin"),
        ledger.c.manufacturer_campaign_reference == bindparam("was_reference"),
        ledger.c.last_message_id == bindparam("was_last"),
    )
    .values({name: bindparam(name) for name in ("state", "last_message_id", "updated_at", "issued_at")})
)


def _entries(query: Select[Any], connection: Connection) -> list[LedgerEntry]:
    return [_entry(row) for row in connection.execute(query)]


def _vins(query: Select[Any], connection: Connection) -> list[str]:
    return list(connection.execute(query).scalars().all())


def _rounds(changes: list[Change]) -> list[list[Change]]:
    """The changes in rounds, each entry at most once a round and in time order across rounds.

    One statement may not touch a row twice (PostgreSQL refuses), and an entry's changes must land
    oldest first, as each sets only its own columns.
    """
    per_key: dict[Key, list[Change]] = {}
    for change in sorted(changes, key=lambda c: (c[2].completed_at, c[2].message_id)):
        per_key.setdefault(change[0], []).append(change)
    depth = max((len(queue) for queue in per_key.values()), default=0)
    return [[queue[n] for queue in per_key.values() if n < len(queue)] for n in range(depth)]


def _by_columns(changes: list[Change]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The rows to upsert, grouped by the columns they set; rows sorted by key, so locks go in order."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (vin, reference), values, event in sorted(changes, key=lambda c: c[0]):
        row = {
            "vin": vin,
            "manufacturer_campaign_reference": reference,
            "last_message_id": event.message_id,
            "updated_at": event.completed_at,
            "issued_at": event.issued_at,
            **values,
        }
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return groups


def _repeat(event: OutcomeEvent) -> bool:
    """A create DVSA already held: it says the recall exists, not in which state (a fix may have come
    since), so it makes an entry where there is none and changes none that is there."""
    return event.verb == "create" and event.result == "already_applied"


def _finds_entries(event: OutcomeEvent) -> bool:
    """A fix or delete that names only DVSA's reference: its entries are looked up by it."""
    return event.verb != "get" and event.manufacturer_campaign_reference is None


def _changes(connection: Connection, event: OutcomeEvent) -> list[tuple[Key, dict[str, Any]]]:
    """The entries ``event`` touches, each with the columns it sets."""
    if event.dvsa_status is None:
        return []  # nothing was sent (a create superseded by a later delete): DVSA confirmed nothing
    if event.verb == "get" and event.lane == "background":
        return []  # a reconcile sweep's answer: compared with the ledger, never written into it
    if event.verb == "get":
        return [change for recall in event.recalls or [] if (change := _confirmed(event, recall))]
    changes = _command_changes(event)
    if event.manufacturer_campaign_reference is not None:
        return [((event.vin.upper(), event.manufacturer_campaign_reference), changes)]
    references = _by_dvsa_reference(connection, event.vin.upper(), event.dvsa_campaign_reference)
    if not references:
        log.debug(
            "no ledger entry for a %s by DVSA reference; skipped",
            event.verb,
            extra={"message_id": event.message_id, "vin": event.vin},
        )
    return [((event.vin.upper(), reference), changes) for reference in references]


def _command_changes(event: OutcomeEvent) -> dict[str, Any]:
    """What a create, fix or delete that DVSA accepted says about its entry."""
    changes: dict[str, Any] = {}
    if event.dvsa_campaign_reference is not None:
        changes["dvsa_campaign_reference"] = event.dvsa_campaign_reference
    if event.verb == "create":
        changes.update(state="open", recall_campaign_start_date=event.recall_campaign_start_date)
        changes["rectification_date"] = None
    elif event.verb == "fix" and event.repair_status == "NOT_FIXED":
        changes.update(state="open", rectification_date=None)
    elif event.verb == "fix":
        changes.update(state="fixed", rectification_date=event.rectification_date)
    else:
        changes["state"] = "deleted"
    return changes


def _confirmed(event: OutcomeEvent, recall: Recall) -> tuple[Key, dict[str, Any]] | None:
    """What one recall of a get's reply says about its entry (``None``: nothing usable)."""
    if not recall.manufacturer_campaign_reference or recall.repair_status not in {"FIXED", "NOT_FIXED"}:
        return None
    changes: dict[str, Any] = {"state": "fixed" if recall.repair_status == "FIXED" else "open"}
    changes["confirmed_at"] = event.completed_at
    if recall.repair_status == "NOT_FIXED":
        changes["rectification_date"] = None  # DVSA's reply carries no rectification date to keep
    if recall.dvsa_campaign_reference:
        changes["dvsa_campaign_reference"] = recall.dvsa_campaign_reference
    start = _date(recall.recall_campaign_start_date)
    if start is not None:
        changes["recall_campaign_start_date"] = start
    return (event.vin.upper(), recall.manufacturer_campaign_reference), changes


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _by_dvsa_reference(connection: Connection, vin: str, reference: str | None) -> list[str]:
    if reference is None:
        return []
    condition: ColumnElement[bool] = and_(ledger.c.vin == vin, ledger.c.dvsa_campaign_reference == reference)
    query = select(ledger.c.manufacturer_campaign_reference).where(condition)
    return list(cast(list[str], connection.execute(query).scalars().all()))
