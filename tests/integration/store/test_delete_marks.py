"""A delete's mark whose taking back was lost (the store away at that moment) does not outlive it.

A delete marks its entry ``deleting`` before it is sent and takes the mark back when DVSA did not apply
it (a 404 while its create is still on its way).  When the store fails just then, the mark stays; at
the delete's next attempt it must not pass for the ledger's own entry, or the delete would wait for
its create while the create waits for the delete (docs/design.md D26).  The fault suite's
``store_restart`` scenario met exactly that.
"""

from __future__ import annotations

import datetime as dt

from recalls.shared.contracts import CreateCommand, DeleteCommand
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.workers.doubts import Doubts
from tests.support.commands import vin

ISSUED = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def commands() -> tuple[CreateCommand, DeleteCommand]:
    create = CreateCommand(
        vin=vin(1), manufacturer_campaign_reference="C1", recall_campaign_start_date=dt.date(2026, 1, 1),
        issued_at=ISSUED,
    )  # fmt: skip
    delete = DeleteCommand(
        vin=vin(1), manufacturer_campaign_reference="C1", issued_at=ISSUED + dt.timedelta(1)
    )
    return create, delete


async def test_a_mark_left_by_an_attempt_dvsa_refused_is_taken_back_at_the_next(db: Database) -> None:
    create, delete = commands()
    doubts = Doubts(Ledger(db))
    await doubts.about_to_delete(delete, maybe_applied=False)  # sent, answered 404; the unmark lost

    again = await doubts.about_to_delete(delete, maybe_applied=False)
    assert not again.was_created  # its own mark is no sign that DVSA held the recall
    await doubts.not_deleted(delete, again)  # the second 404, with the store back

    assert await Ledger(db).for_vin(vin(1)) == []
    assert await doubts.superseded(create) is False  # the create goes, instead of waiting for the delete


async def test_a_mark_of_an_attempt_that_may_have_deleted_still_counts(db: Database) -> None:
    _, delete = commands()
    doubts = Doubts(Ledger(db))
    await doubts.about_to_delete(delete, maybe_applied=False)  # sent; the worker died before the answer

    again = await doubts.about_to_delete(delete, maybe_applied=True)  # redelivered
    assert again.was_created  # DVSA may have removed it: a 404 now means done
    [entry] = await Ledger(db).for_vin(vin(1))
    assert (entry.state, entry.last_message_id) == ("deleting", delete.message_id)
