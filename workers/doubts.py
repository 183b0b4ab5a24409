"""What DVSA's answer cannot tell about a command on its own, settled by asking the ledger.

DVSA's create and delete are not idempotent, and a worker that dies between DVSA's answer and its ack
leaves the command to be taken again.  Two answers are then ambiguous:

- A delete answered 404 after an earlier attempt that may have reached DVSA: deleted by that attempt,
  or never created yet (a redelivery also covers commands the dead worker held but never sent)?  It
  counts as done only if the ledger knows the recall was created; otherwise it waits for the create.
- A create taken again: sending it would bring back what a delete issued after it removed, perhaps a
  moment ago (a broker loss returns a create and its delete together; the delete's answer may not be
  in the ledger yet).  So a create is not sent when its ledger entry was last changed by this very
  create (applied, its ack lost) or by a command issued after it: fixed, confirmed by a get, deleted,
  or marked ``deleting`` (a delete whose answer was lost, a timeout or a 5xx, is marked at once).
  DVSA would answer 409 or bring the recall back; the create counts as done.  Issue times, not the
  times the changes were applied, decide: a create issued after a delete is sent.

The recorder keeps the ledger from the outcome events, which wait in the broker while it is away; so
the worker that applied a create, fix or delete also writes it to the ledger itself, at once, before it
reports it (the recorder's copy later changes nothing).  A check that still comes too early errs on the
safe side: the delete waits and asks again, the create is sent.  A store that does not answer is
treated the same way, with a warning.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from shared.contracts import CreateCommand, DeleteCommand, OutcomeEvent
from shared.store.ledger import Ledger, LedgerEntry

log = logging.getLogger("recalls.worker.doubts")


class Doubts:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def was_created(self, command: DeleteCommand) -> bool:
        """The ledger holds the recall ``command`` deletes (in any state): a 404 means it is gone."""
        return any(_names(entry, command) for entry in await self._entries(command.vin))

    async def superseded(self, command: CreateCommand) -> bool:
        """The ledger's entry for ``command``'s recall was last changed by ``command`` or a later command."""
        for entry in await self._entries(command.vin):
            if entry.manufacturer_campaign_reference == command.manufacturer_campaign_reference:
                return entry.issued_at is not None and entry.issued_at >= command.issued_at
        return False

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
