"""``recalls status VIN`` and ``recalls batch status ID``: what the store knows, as a table or as JSON.

Both only read: the store is opened as it is, never created or migrated (:mod:`recalls.cli.store`).
A store that is not there yet is an exit 1; a malformed VIN or an unknown batch an exit 2.
"""

from __future__ import annotations

import re
from dataclasses import asdict

import click
from rich.table import Table

from recalls.cli import errors
from recalls.cli.output import json_option, print_json, when
from recalls.cli.store import with_store
from recalls.cli.tables import console, table
from recalls.shared.store.batches import Batches, BatchStatus
from recalls.shared.store.ledger import Ledger, LedgerEntry

_VIN = re.compile(r"[A-Za-z0-9]{16,17}")


@click.command()
@click.argument("vin")
@json_option
def status(vin: str, as_json: bool) -> None:
    """Show what the ledger holds for one vehicle."""
    if not _VIN.fullmatch(vin):
        raise errors.InputError("vin: must be 16 or 17 letters and digits")
    entries = with_store(errors.settings(), lambda db: Ledger(db).for_vin(vin))
    if as_json:
        print_json([asdict(entry) for entry in entries])
    elif not entries:
        click.echo(f"The ledger holds nothing for {vin.upper()}.")
    else:
        console().print(_ledger_table(vin.upper(), entries))


def _ledger_table(vin: str, entries: list[LedgerEntry]) -> Table:
    headings = ("campaign", "DVSA ref", "state", "start", "rectified", "last message", "updated", "confirmed")
    found = table(f"Ledger for {vin}", headings)
    for entry in entries:
        found.add_row(
            entry.manufacturer_campaign_reference,
            entry.dvsa_campaign_reference or "",
            entry.state,
            when(entry.recall_campaign_start_date),
            when(entry.rectification_date),
            entry.last_message_id,
            when(entry.updated_at),
            when(entry.confirmed_at),
        )
    return found


@click.group()
def batch() -> None:
    """Batch jobs: imports, syncs and batch checks."""


@batch.command(name="status")
@click.argument("batch_id", metavar="ID")
@json_option
def batch_status(batch_id: str, as_json: bool) -> None:
    """Show a batch job's progress and a sample of its failures."""
    found = with_store(errors.settings(), lambda db: Batches(db).status(batch_id))
    if found is None:
        raise errors.InputError(f"ID: no batch job with id {batch_id!r}")
    if as_json:
        print_json(asdict(found))
        return
    out = console()
    out.print(_batch_table(found))
    if found.failures:
        failures = table("Failures (sample)", ("message id", "vin", "reason"))
        for failure in found.failures:
            failures.add_row(failure["message_id"], failure["vin"], failure["reason"] or "")
        out.print(failures)


def _batch_table(found: BatchStatus) -> Table:
    shown = table(f"Batch {found.id}", ("field", "value"), show_header=False)
    rows = {
        "kind": found.kind,
        "status": found.status,
        "source": found.source or "",
        "created": when(found.created_at),
        "updated": when(found.updated_at),
        "published": found.total,
        "processed": found.processed,
        "succeeded": found.succeeded,
        "already applied": found.already_applied,
        "failed": found.failed,
        "rejected": found.rejected,
        "skipped": found.skipped,
    }
    for name, value in rows.items():
        shown.add_row(name, str(value))
    return shown
