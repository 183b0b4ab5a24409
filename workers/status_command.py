"""``recalls status VIN`` and ``recalls batch status ID``: what the store knows, as a table or as JSON.

Both only read: they open the store with :meth:`Database.connect_existing`, which neither creates nor
migrates one.  Failures print one ``error: ...`` line on stderr: exit 2 for input or settings the user
must correct (naming the field and the reason), exit 1 for an unknown batch, a store that is not there
(yet) or an unreachable one.  No message shows the database password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TypeVar

import click
import msgspec
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from recalls.shared.settings import Settings
from recalls.shared.store.batches import Batches, BatchStatus
from recalls.shared.store.database import Database, StoreError, StoreMissing, StoreOutdated, StoreUnavailable
from recalls.shared.store.ledger import Ledger, LedgerEntry
from recalls.workers.cli_errors import fail, settings_or_exit

_T = TypeVar("_T")
_VIN = re.compile(r"[A-Za-z0-9]{16,17}")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _with_store(settings: Settings, work: Callable[[Database], Awaitable[_T]]) -> _T:
    """Run ``work`` against the existing store, turning its failures into one error line."""

    async def run() -> _T:
        async with Database.connect_existing(settings) as db:
            return await work(db)

    try:
        return asyncio.run(run())
    except (StoreMissing, StoreOutdated, StoreUnavailable) as exc:
        fail(str(exc), 1)
    except StoreError as exc:
        fail(str(exc), 2)
    except (SQLAlchemyError, OSError) as exc:  # the store went away after it answered
        fail(str(StoreUnavailable.of(settings, exc)), 1)


def _print_json(value: object) -> None:
    click.echo(msgspec.json.encode(value).decode())


def _console() -> Console:
    console = Console()
    # Piped output has no width to fit; rich's default 80 columns would fold ids and times.
    return console if console.is_terminal else Console(width=200)


def _when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.isoformat()


@click.command()
@click.argument("vin")
@_JSON
def status(vin: str, as_json: bool) -> None:
    """Show what the ledger holds for one vehicle."""
    if not _VIN.fullmatch(vin):
        fail("vin: must be 16 or 17 letters and digits", 2)
    entries = _with_store(settings_or_exit(), lambda db: Ledger(db).for_vin(vin))
    if as_json:
        _print_json([asdict(entry) for entry in entries])
    elif not entries:
        click.echo(f"The ledger holds nothing for {vin.upper()}.")
    else:
        _console().print(_ledger_table(vin.upper(), entries))


def _ledger_table(vin: str, entries: list[LedgerEntry]) -> Table:
    table = Table(title=f"Ledger for {vin}")
    headings = ("campaign", "DVSA ref", "state", "start", "rectified", "last message", "updated", "confirmed")
    for heading in headings:
        table.add_column(heading, overflow="fold")
    for entry in entries:
        table.add_row(
            entry.manufacturer_campaign_reference,
            entry.dvsa_campaign_reference or "",
            entry.state,
            _when(entry.recall_campaign_start_date),
            _when(entry.rectification_date),
            entry.last_message_id,
            _when(entry.updated_at),
            _when(entry.confirmed_at),
        )
    return table


@click.group()
def batch() -> None:
    """Batch jobs: imports, syncs and batch checks."""


@batch.command(name="status")
@click.argument("batch_id", metavar="ID")
@_JSON
def batch_status(batch_id: str, as_json: bool) -> None:
    """Show a batch job's progress and a sample of its failures."""
    found = _with_store(settings_or_exit(), lambda db: Batches(db).status(batch_id))
    if found is None:
        fail(f"no batch job with id {batch_id!r}", 1)
    if as_json:
        _print_json(asdict(found))
        return
    console = _console()
    console.print(_batch_table(found))
    if found.failures:
        failures = Table(title="Failures (sample)")
        for heading in ("message id", "vin", "reason"):
            failures.add_column(heading, overflow="fold")
        for failure in found.failures:
            failures.add_row(failure["message_id"], failure["vin"], failure["reason"] or "")
        console.print(failures)


def _batch_table(found: BatchStatus) -> Table:
    table = Table(title=f"Batch {found.id}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows = {
        "kind": found.kind,
        "status": found.status,
        "source": found.source or "",
        "created": _when(found.created_at),
        "updated": _when(found.updated_at),
        "published": found.total,
        "processed": found.processed,
        "succeeded": found.succeeded,
        "already applied": found.already_applied,
        "failed": found.failed,
        "rejected": found.rejected,
        "skipped": found.skipped,
    }
    for name, value in rows.items():
        table.add_row(name, str(value))
    return table
