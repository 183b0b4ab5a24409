"""``recalls sync``: DVSA's daily-snapshot semantics over the API, computed against the ledger.

DVSA's SFTP route takes a full snapshot of every outstanding recall each day, adds the new rows and
marks vehicles missing from it as fixed.  The API has no such semantics, so :func:`plan_sync` works
them out: rows the ledger does not hold become creates; recalls the ledger holds open that the
snapshot lacks become fixes, dated the snapshot's day.  :func:`run_sync` then publishes the plan as a
batch through :class:`~recalls.producers.importer.Importer`.  Every command's message_id comes from its
content and the date, so running the same snapshot twice publishes nothing the second time.

A truncated file must not mark half the country's recalls fixed: a plan that would fix more than
``max_fix_share`` of the open recalls is refused unless the caller allows it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from recalls.producers.importer import Importer, ImportProgress
from recalls.producers.reject_report import RejectReport, report_path
from recalls.producers.snapshot_csv import SnapshotReader, chunks
from recalls.shared.contracts import CreateCommand, FixCommand
from recalls.shared.message_ids import content_id
from recalls.shared.store.ledger import Ledger, LedgerEntry

DEFAULT_MAX_FIX_SHARE = 0.2
SAMPLE = 5
_DATE_IN_NAME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


class MassFixRefused(Exception):
    """The plan would fix more than the allowed share of open recalls."""


@dataclass
class SyncPlan:
    snapshot: Path
    rectification_date: dt.date
    open_before: int  # open recalls in the ledger
    rows_read: int = 0
    rejected: int = 0
    unchanged: int = 0
    creates: int = 0
    create_sample: list[CreateCommand] = field(default_factory=list)
    fixes: list[FixCommand] = field(default_factory=list)

    @property
    def fix_share(self) -> float:
        return len(self.fixes) / self.open_before if self.open_before else 0.0


def snapshot_date(path: Path, today: dt.date) -> dt.date:
    """The date in the file's name (``recalls-2026-11-22.csv``, ``…20261122…``), else ``today``."""
    match = _DATE_IN_NAME.search(path.name)
    if match:
        try:
            return dt.date(*(int(part) for part in match.groups()))
        except ValueError:
            pass
    return today


def fix_message_id(entry: LedgerEntry, rectification_date: dt.date) -> str:
    return content_id(f"fix|{entry.vin}|{entry.manufacturer_campaign_reference}|{rectification_date}")


async def plan_sync(ledger: Ledger, snapshot: Path, rectification_date: dt.date) -> SyncPlan:
    """Read the snapshot once against the ledger; nothing is published."""
    plan = SyncPlan(snapshot, rectification_date, open_before=await ledger.count_open())
    # 8-byte digests of the snapshot's keys: about 60 MB for a million rows, versus several times that
    # for the keys themselves.
    present: set[int] = set()
    reader = await asyncio.to_thread(SnapshotReader.open, snapshot)
    rejects = await asyncio.to_thread(RejectReport, report_path(snapshot))
    try:
        async for chunk in chunks(reader):
            await asyncio.to_thread(rejects.add, chunk.rejected)
            plan.rows_read += len(chunk.commands) + len(chunk.rejected)
            plan.rejected += len(chunk.rejected)
            keys = {(c.vin, c.manufacturer_campaign_reference): c for _, c in chunk.commands}
            present.update(_digest(*key) for key in keys)
            held = await ledger.states(keys)
            for key, command in keys.items():
                if held.get(key, "deleted") != "deleted":  # held, and not deleted at DVSA
                    plan.unchanged += 1
                    continue
                plan.creates += 1
                if len(plan.create_sample) < SAMPLE:
                    plan.create_sample.append(command)
    finally:
        await asyncio.to_thread(reader.close)
        await asyncio.to_thread(rejects.close)
    async for entry in ledger.open_recalls():
        if _digest(entry.vin, entry.manufacturer_campaign_reference) not in present:
            plan.fixes.append(_fix(entry, rectification_date))
    return plan


def check_mass_fix(plan: SyncPlan, max_fix_share: float) -> None:
    if plan.fix_share > max_fix_share:
        raise MassFixRefused(
            f"the snapshot would mark {len(plan.fixes)} of {plan.open_before} open recalls fixed "
            f"({plan.fix_share:.0%}, more than the {max_fix_share:.0%} allowed): is the file complete? "
            "Use --allow-mass-fix if it is."
        )


async def run_sync(importer: Importer, plan: SyncPlan, stop: asyncio.Event | None = None) -> ImportProgress:
    """Publish the plan: the snapshot's new rows as creates, then the fixes."""
    return await importer.run(plan.snapshot, stop, kind="sync", then=plan.fixes)


def _fix(entry: LedgerEntry, rectification_date: dt.date) -> FixCommand:
    return FixCommand(
        message_id=fix_message_id(entry, rectification_date),
        vin=entry.vin,
        manufacturer_campaign_reference=entry.manufacturer_campaign_reference,
        dvsa_campaign_reference=entry.dvsa_campaign_reference,
        rectification_date=rectification_date,
        repair_status="FIXED",
    )


def _digest(vin: str, reference: str) -> int:
    digest = hashlib.blake2b(f"{vin}|{reference}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
