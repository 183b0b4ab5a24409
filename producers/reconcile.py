"""``recalls reconcile``: ask DVSA about every vehicle of the ledger, and report (or repair) each difference.

The sweep is a batch job of kind ``reconcile`` (``recalls batch status ID`` follows it): one ``get`` per
vehicle, read from the ledger a page at a time as they are published (so memory does not grow with the
ledger either), on the background lane, whose calls take only the DVSA budget that live and bulk work
leave, so batch checks and live commands go on at their pace.  The event recorder journals each answer
in the batch and leaves the ledger alone (a sweep's answers are compared with the ledger, not written
into it).  Once every answer is in, each vehicle's is compared with the ledger as it stands then
(:mod:`recalls.producers.drift`): a page of vehicles at a time, so memory does not grow with the ledger.

A repair is a second batch, kind ``reconcile-repair``, on the bulk lane: the creates and fixes that
bring DVSA back to the ledger; campaigns DVSA holds that the ledger lacks are written into the ledger.
It is refused, whole, when it would touch more than ``max_repair_share`` of the vehicles swept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from recalls.producers.drift import KINDS, Answer, Drift, Kind, Repair, check_mass_repair, compare, repair
from recalls.shared.contracts import Command, GetCommand, Lane, OutcomeEvent, Recall, utc_now
from recalls.shared.store.batches import RESULT_COLUMNS, Batches, BatchStatus, check_message_id
from recalls.shared.store.ledger import Ledger, LedgerEntry

RECONCILE_KIND = "reconcile"
REPAIR_KIND = "reconcile-repair"
SAMPLE = 10
_PAGE = 1000
_ENDED = {"completed", "failed", "cancelled"}


class Publishes(Protocol):
    async def publish_many(
        self, commands: Iterable[Command], *, lane: Lane = "live", validated: bool = False
    ) -> Sequence[str | Exception]: ...


class SweepFailed(Exception):
    """The sweep could not finish: its checks were not all queued, or its batch failed."""


@dataclass
class Reconciliation:
    """What one run found and did."""

    batch_id: str
    swept: int = 0
    unchecked: list[str] = field(default_factory=list)  # vehicles DVSA gave no usable answer for
    repairs: list[Repair] = field(default_factory=list)  # one per drift, acted on only with repair
    refused: str | None = None
    repair_batch: BatchStatus | None = None

    @property
    def drifts(self) -> list[Drift]:
        return [planned.drift for planned in self.repairs]

    def counts(self) -> dict[Kind, int]:
        counts = dict.fromkeys(KINDS, 0)
        for drift in self.drifts:
            counts[drift.kind] += 1
        return counts


class Reconciler:
    """Runs sweeps and repairs through a publisher, against the ledger and the batch journal."""

    def __init__(
        self,
        publisher: Publishes,
        ledger: Ledger,
        batches: Batches,
        *,
        poll: float = 1.0,
        on_progress: Callable[[BatchStatus], None] = lambda status: None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._publisher = publisher
        self._ledger = ledger
        self._batches = batches
        self._poll = poll
        self._on_progress = on_progress
        self._clock = clock

    async def sweep(self, vins: AsyncIterable[Sequence[str]], *, source: str) -> Reconciliation:
        """Check ``vins`` (pages of VINs, each published as it comes) at DVSA and compare each answer
        with the ledger; nothing is repaired."""
        batch_id = await self._batches.start(RECONCILE_KIND, source)
        found = Reconciliation(batch_id)

        async def checks() -> AsyncIterator[list[Command]]:
            async for page in vins:
                found.swept += len(page)
                yield [
                    GetCommand(vin=vin, correlation_id=batch_id, message_id=check_message_id(batch_id, vin))
                    for vin in page
                ]

        await self._publish(batch_id, checks(), lane="background")
        await self._until_ended(batch_id)
        today = self._clock().date()
        async for page in _pages(self._answers(batch_id, found.unchecked)):
            entries = await self._ledger.for_vins([answer.vin for answer in page])
            for answer in page:
                found.repairs += _plans(entries[answer.vin], answer, batch_id, today)
        return found

    async def repair(self, found: Reconciliation, *, max_share: float) -> None:
        """Carry out ``found``'s repairs, unless they touch more than ``max_share`` of the vehicles.

        Raises :class:`recalls.producers.drift.MassRepairRefused` (nothing done) or :class:`SweepFailed`.
        """
        doable = [planned for planned in found.repairs if planned.not_repaired is None]
        check_mass_repair(len({planned.drift.vin for planned in doable}), found.swept, max_share)
        for planned in doable:
            if planned.record is not None:
                await self._ledger.record_held(_as_event(planned.record), [planned.drift.campaign])
        commands = [command for planned in doable for command in planned.commands]
        if commands:
            batch_id = await self._batches.start(REPAIR_KIND, f"reconcile {found.batch_id}")
            await self._publish(batch_id, _chunks(commands), lane="bulk")
            found.repair_batch = await self._until_ended(batch_id)

    async def _publish(self, batch_id: str, pages: AsyncIterable[list[Command]], *, lane: Lane) -> None:
        """Journal and publish ``pages`` of commands one at a time, then close the batch's publishing."""
        async for page in pages:
            claimed = await self._batches.claim(batch_id, page)
            results = await self._publisher.publish_many(claimed, lane=lane, validated=True)
            await self._batches.published([result for result in results if isinstance(result, str)])
            failures = [result for result in results if isinstance(result, Exception)]
            if failures:
                message = f"{len(failures)} of {len(claimed)} commands not queued ({failures[0]})"
                await self._batches.fail(batch_id, f"publishing: {message}")
                raise SweepFailed(f"batch {batch_id}: {message}")
        await self._batches.close_publishing(batch_id, rejected=0, skipped=0)

    async def _until_ended(self, batch_id: str) -> BatchStatus:
        """The batch's status once it has ended; progress reported every ``poll`` seconds meanwhile.

        The store is polled: the outcomes are recorded by a worker, which tells this process nothing.
        """
        while True:
            status = await self._batches.status(batch_id)
            if status is None:
                raise SweepFailed(f"batch {batch_id}: gone from the store (purged?)")
            self._on_progress(status)
            if status.status in _ENDED:
                if status.status != "completed":
                    raise SweepFailed(f"batch {batch_id} {status.status}: {status.error_message or ''}")
                return status
            await asyncio.sleep(self._poll)

    async def _answers(self, batch_id: str, unchecked: list[str]) -> AsyncIterator[Answer]:
        """DVSA's answer for each vehicle of the sweep; those with none are added to ``unchecked``."""
        async for row in self._batches.results(batch_id, columns=(*RESULT_COLUMNS, "completed_at")):
            answered = row["result"] != "failed" and row["dvsa_status"] in (200, 404)
            if not answered or row["completed_at"] is None:
                unchecked.append(row["vin"])
                continue
            recalls = msgspec.convert(row["recalls"] or [], list[Recall])
            yield Answer(row["vin"], recalls, row["completed_at"], row["message_id"])


def _plans(entries: list[LedgerEntry], answer: Answer, run: str, today: dt.date) -> list[Repair]:
    by_reference = {entry.manufacturer_campaign_reference: entry for entry in entries}
    return [
        repair(drift, by_reference.get(drift.campaign), answer, run=run, today=today)
        for drift in compare(entries, answer)
    ]


def _as_event(answer: Answer) -> OutcomeEvent:
    """A sweep's answer in the shape the ledger records a get's: as of when DVSA gave it."""
    return OutcomeEvent(
        message_id=answer.message_id,
        verb="get",
        vin=answer.vin,
        result="applied",
        attempts=1,
        first_seen_at=answer.answered_at,
        completed_at=answer.answered_at,
        recalls=list(answer.recalls),
        lane="background",
    )


async def _chunks(commands: Sequence[Command]) -> AsyncIterator[list[Command]]:
    for start in range(0, len(commands), _PAGE):
        yield list(commands[start : start + _PAGE])


async def _pages(answers: AsyncIterator[Answer]) -> AsyncIterator[list[Answer]]:
    page: list[Answer] = []
    async for answer in answers:
        page.append(answer)
        if len(page) == _PAGE:
            yield page
            page = []
    if page:
        yield page


def drift_rows(drifts: Iterable[Drift]) -> Iterable[dict[str, Any]]:
    """The drift report's rows: VIN, campaign, kind, what the ledger says, what DVSA says."""
    for drift in drifts:
        yield {
            "vin": drift.vin,
            "campaign": drift.campaign,
            "kind": drift.kind,
            "ledger_says": drift.ledger_says,
            "dvsa_says": drift.dvsa_says,
        }
