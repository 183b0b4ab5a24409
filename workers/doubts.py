"""What DVSA's answer cannot tell about a command on its own, settled by asking the ledger.

DVSA's create and delete are not idempotent, and a worker that dies between DVSA's answer and its ack
leaves the command to be taken again.  Two answers are then ambiguous:

- A delete answered 404 after an earlier attempt that may have reached DVSA: deleted by that attempt,
  or never created yet (a redelivery also covers commands the dead worker held but never sent)?  It
  counts as done only if the ledger held the recall before this attempt; otherwise it waits for the
  create.
- A create taken again: sending it would bring back what a delete issued after it removed, perhaps a
  moment ago.  So a delete marks its entry ``deleting`` just before it is sent (made if the ledger has
  none) and keeps the mark while DVSA may have applied it; a delete DVSA did not apply (a refusal, a
  404 that waits for its create) takes the mark back.  A create is not sent when its entry was last
  changed by this very create (applied, its ack lost) or by a command issued after it: it counts as
  done.  If that command is a delete still ``deleting``, the create waits for it to settle instead
  (it may yet meet 404 and take its mark back).  Issue times, not the times changes were applied,
  decide: a create issued after a delete is sent.

The recorder keeps the ledger from the outcome events, which wait in the broker while it is away; so
the worker that applied a create, fix or delete also writes it to the ledger itself, at once, before it
reports it (the recorder's copy later changes nothing).  A check that still comes too early errs on the
safe side: the delete waits and asks again, the create is sent.  A store that does not answer is
treated the same way, with a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from recalls.shared.contracts import CreateCommand, DeleteCommand, FixCommand, OutcomeEvent
from recalls.shared.store.group_commit import GroupCommit
from recalls.shared.store.ledger import Ledger, LedgerEntry

log = logging.getLogger("recalls.worker.doubts")


@dataclass(frozen=True)
class DeleteMark:
    """What a delete found in the ledger just before it was sent, and marked ``deleting``."""

    held: list[LedgerEntry]  # the entries it names, as they were
    marked: dict[str, LedgerEntry | None]  # reference: its entry as it was (None: the ledger had none)

    @property
    def was_created(self) -> bool:
        """The ledger held the recall before this attempt: a 404 means it is gone."""
        return bool(self.held)


class DeleteInDoubt(Exception):
    """A delete issued after this create may just have removed its recall: ask again once it settles."""


class Doubts:
    def __init__(self, ledger: Ledger, *, clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger
        self._clock = clock
        self._written = GroupCommit[OutcomeEvent](lambda events: ledger.apply(*events))

    async def superseded(self, command: CreateCommand) -> bool:
        """``command``'s entry was last changed by it or by a later command; raise while that is in doubt."""
        for entry in await self._entries(command.vin):
            if entry.manufacturer_campaign_reference != command.manufacturer_campaign_reference:
                continue
            if entry.issued_at is None or entry.issued_at < command.issued_at:
                return False
            if entry.state == "deleting" and entry.last_message_id != command.message_id:
                raise DeleteInDoubt(command.message_id)
            return True
        return False

    async def about_to_delete(self, command: DeleteCommand, *, maybe_applied: bool) -> DeleteMark:
        """Mark what ``command`` deletes ``deleting``, unless a later command changed it.

        ``maybe_applied``: an earlier attempt of ``command`` may have reached DVSA.  If none may have,
        a mark of its own that it finds was left by an attempt DVSA surely did not apply, whose
        taking back failed (the store was away): it is neither a sign that the ledger held the recall
        nor a state to restore, and is handled as no entry at all.  Kept, it would wait for its create
        while the create waits for it.
        """

        def stale(entry: LedgerEntry) -> bool:
            own = entry.state == "deleting" and entry.last_message_id == command.message_id
            return own and not maybe_applied

        def choose(entries: list[LedgerEntry]) -> tuple[list[LedgerEntry], dict[str, LedgerEntry | None]]:
            named = [entry for entry in entries if _names(entry, command)]
            held = [entry for entry in named if not stale(entry)]
            marked: dict[str, LedgerEntry | None] = {
                entry.manufacturer_campaign_reference: entry
                for entry in held
                if entry.issued_at is None or entry.issued_at <= command.issued_at
            }
            marked |= {entry.manufacturer_campaign_reference: None for entry in named if stale(entry)}
            if command.manufacturer_campaign_reference is not None and not held:
                marked[command.manufacturer_campaign_reference] = None  # its create may not be known yet
            return held, marked

        try:
            held, marked = await self._ledger.mark_deleting_before_sending(
                command.vin,
                choose,
                message_id=command.message_id,
                issued_at=command.issued_at,
                at=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not mark a delete before sending it", extra={"error": type(exc).__name__})
            return DeleteMark([], {})
        return DeleteMark(held, marked)

    async def not_deleted(self, command: DeleteCommand, mark: DeleteMark) -> None:
        """DVSA did not apply ``command``: its marks go, unless something newer replaced them."""
        try:
            await self._ledger.unmark_deleting(command.vin, mark.marked, message_id=command.message_id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not take back a delete's mark", extra={"error": type(exc).__name__})

    async def may_have_deleted(self, command: DeleteCommand) -> None:
        """Mark what ``command`` deletes as in doubt: DVSA may have applied it, but did not say."""
        if command.manufacturer_campaign_reference is not None:
            references = [command.manufacturer_campaign_reference]
        else:
            entries = await self._entries(command.vin)
            references = [e.manufacturer_campaign_reference for e in entries if _names(e, command)]
        try:
            await self._ledger.mark_deleting(
                command.vin, references, message_id=command.message_id, issued_at=command.issued_at
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not mark a delete in doubt", extra={"error": type(exc).__name__})

    async def remember(self, event: OutcomeEvent) -> None:
        """Write what DVSA confirmed of a create, fix or delete to the ledger now, not when recorded.

        Writes asked for at the same time share one transaction (:mod:`recalls.shared.store.group_commit`).
        """
        if event.verb == "get" or event.result == "failed" or event.dvsa_status is None:
            return
        try:
            await self._written(event)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "could not write to the ledger; the recorder will", extra={"error": type(exc).__name__}
            )

    async def rectification_date(self, command: FixCommand) -> dt.date | None:
        """The date of the fix the ledger holds for ``command``'s campaign, if it holds one as fixed."""
        for entry in await self._entries(command.vin):
            if _names(entry, command) and entry.state == "fixed":
                return entry.rectification_date
        return None

    async def _entries(self, vin: str) -> list[LedgerEntry]:
        try:
            return await self._ledger.for_vin(vin)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "the ledger did not answer; assuming it knows nothing", extra={"error": type(exc).__name__}
            )
            return []


def _names(entry: LedgerEntry, command: DeleteCommand | FixCommand) -> bool:
    if command.manufacturer_campaign_reference is not None:
        return entry.manufacturer_campaign_reference == command.manufacturer_campaign_reference
    return entry.dvsa_campaign_reference == command.dvsa_campaign_reference
