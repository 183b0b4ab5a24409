"""What DVSA's answer cannot tell about a command on its own, settled by asking the ledger.

DVSA's create and delete are not idempotent, and a worker that dies between DVSA's answer and its ack
leaves the command to be taken again.  Two answers are then ambiguous:

- A delete answered 404 after an earlier attempt that may have reached DVSA: deleted by that attempt,
  or never created yet (a redelivery also covers commands the dead worker held but never sent)?  It
  counts as done only if the ledger knew the recall before this attempt; otherwise it waits for the
  create.
- A create whose recall a later-issued delete has already removed: sending it again would bring the
  recall back.  It counts as done, superseded, when the ledger shows a delete newer than the create,
  done or in doubt.  So a delete marks its entries ``deleting`` just before it is sent, and keeps the
  mark while DVSA may have applied it: a create taken at the same moment (both returned by a broker
  loss) would otherwise read the ledger before the delete's answer is written, and bring back what
  it removed.  A delete DVSA did not apply (a refusal, a 404 that waits) puts the entries back.

The recorder keeps the ledger from the outcome events, which wait in the broker while it is away; so
the worker that applied a create, fix or delete also writes it to the ledger itself, at once, before it
reports it (the recorder's copy later changes nothing).  A check that still comes too early errs on the
safe side: the delete waits and asks again, the create is sent.  A store that does not answer is
treated the same way, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from shared.contracts import CreateCommand, DeleteCommand, OutcomeEvent
from shared.store.ledger import Ledger, LedgerEntry

log = logging.getLogger("recalls.worker.doubts")


@dataclass(frozen=True)
class DeleteMark:
    """What the ledger held of a delete's recalls just before it was sent, and which it marked."""

    held: list[LedgerEntry]
    marked: dict[str, LedgerEntry | None]  # reference: its entry as it was (None: it had none)

    @property
    def was_created(self) -> bool:
        """The ledger knew the recall before this attempt: a 404 means it is gone."""
        return bool(self.held)


class Doubts:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def superseded(self, command: CreateCommand) -> bool:
        """A delete issued after ``command`` has already removed its recall, or may have."""
        for entry in await self._entries(command.vin):
            if entry.manufacturer_campaign_reference == command.manufacturer_campaign_reference:
                return entry.state in ("deleted", "deleting") and entry.updated_at > command.issued_at
        return False

    async def about_to_delete(self, command: DeleteCommand) -> DeleteMark:
        """Mark the recalls ``command`` deletes ``deleting``, unless the fleet learnt of them later."""
        held = [entry for entry in await self._entries(command.vin) if _names(entry, command)]
        marked: dict[str, LedgerEntry | None] = {
            entry.manufacturer_campaign_reference: entry
            for entry in held
            if entry.updated_at < command.issued_at
        }
        if command.manufacturer_campaign_reference is not None and not held:
            marked[command.manufacturer_campaign_reference] = None  # its create may be in doubt too
        await self._mark(command, list(marked))
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
        await self._mark(command, references)

    async def _mark(self, command: DeleteCommand, references: list[str]) -> None:
        try:
            await self._ledger.mark_deleting(
                command.vin, references, message_id=command.message_id, issued_at=command.issued_at
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not mark a delete in doubt", extra={"error": type(exc).__name__})

    async def remember(self, event: OutcomeEvent) -> None:
        """Write what DVSA confirmed of a create, fix or delete to the ledger now, not when recorded."""
        if event.verb == "get" or event.result == "failed" or event.dvsa_status is None:
            return
        try:
            await self._ledger.apply(event)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "could not write to the ledger; the recorder will", extra={"error": type(exc).__name__}
            )

    async def _entries(self, vin: str) -> list[LedgerEntry]:
        try:
            return await self._ledger.for_vin(vin)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "the ledger did not answer; assuming it knows nothing", extra={"error": type(exc).__name__}
            )
            return []


def _names(entry: LedgerEntry, command: DeleteCommand) -> bool:
    if command.manufacturer_campaign_reference is not None:
        return entry.manufacturer_campaign_reference == command.manufacturer_campaign_reference
    return entry.dvsa_campaign_reference == command.dvsa_campaign_reference
