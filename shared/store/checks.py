"""The cache of checks: the newest whole answer DVSA gave about each vehicle, for the batch API to reuse.

Only a get that names no campaign and succeeded tells everything DVSA holds about a vehicle, so only
those are remembered (a get for one campaign answers about that campaign alone).  Events arrive in any
order and more than once: a vehicle's entry only takes an answer newer (by ``completed_at``) than the
one it holds, so every consumer ends with the same cache.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

import msgspec
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from recalls.shared.contracts import OutcomeEvent, Recall
from recalls.shared.store.database import Database
from recalls.shared.store.tables import vin_checks

_PAGE = 1000
_RECALLS = msgspec.json.Decoder(list[Recall])


class VinChecks:
    """Remembers and looks up DVSA's answers about vehicles."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def remember(self, *events: OutcomeEvent) -> None:
        """:meth:`remember_within` in a transaction of its own."""
        await self._db.run(partial(self.remember_within, events=events), write=True)

    def remember_within(self, connection: Connection, events: Sequence[OutcomeEvent]) -> None:
        """Keep the answers of the whole-vehicle gets among ``events``, unless newer ones are held."""
        newest: dict[str, OutcomeEvent] = {}
        for event in events:
            if _whole_answer(event):
                vin = event.vin.upper()
                held = newest.get(vin)
                if held is None or event.completed_at > held.completed_at:
                    newest[vin] = event
        if not newest:
            return
        rows = [  # in key order, so that two writers lock rows in turn
            {
                "vin": vin,
                "checked_at": event.completed_at,
                "recalls": msgspec.json.encode(event.recalls).decode(),
            }
            for vin, event in sorted(newest.items())
        ]
        connection.execute(self._upsert(), rows)

    async def fresh(self, vins: Collection[str], since: dt.datetime) -> dict[str, list[Recall]]:
        """The answers about ``vins`` given at or after ``since``, keyed by the VIN as asked."""
        asked = {vin.upper(): vin for vin in vins}
        wanted = sorted(asked)
        found: dict[str, list[Recall]] = {}
        async with self._db.reading() as connection:
            for start in range(0, len(wanted), _PAGE):
                query = select(vin_checks.c.vin, vin_checks.c.recalls).where(
                    vin_checks.c.vin.in_(wanted[start : start + _PAGE]), vin_checks.c.checked_at >= since
                )
                for row in await connection.execute(query):
                    found[asked[row.vin]] = _RECALLS.decode(row.recalls)
        return found

    def _upsert(self) -> Any:
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        insert = dialect.insert(vin_checks)
        newer = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=[vin_checks.c.vin],
            set_={"checked_at": newer.checked_at, "recalls": newer.recalls},
            where=newer.checked_at > vin_checks.c.checked_at,
        )


def _whole_answer(event: OutcomeEvent) -> bool:
    """A get of everything DVSA holds about the vehicle, answered."""
    return (
        event.verb == "get"
        and event.result != "failed"
        and event.recalls is not None
        and event.manufacturer_campaign_reference is None
        and event.dvsa_campaign_reference is None
    )
