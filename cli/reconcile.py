"""The ``recalls reconcile`` command: sweep, report every drift, repair on request.

Exit 0 when DVSA holds what the ledger says; 3 when it does not, whether repaired or not (a repair
refused as a mass repair says so on stderr); 1 when the sweep could not finish (some vehicles got no
answer, the broker or the store failed); 2 for input the user must correct.  The drift report (CSV) is always
written; with ``--metrics-file`` the figures are also written in Prometheus' text format, for
node_exporter's textfile collector, which is how a cron job's results reach Prometheus.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.errors import InputError, ServiceError
from recalls.cli.output import json_option, print_json
from recalls.cli.store import in_store
from recalls.cli.tables import progress_bar
from recalls.producers.config import publisher_config
from recalls.producers.drift import DEFAULT_MAX_REPAIR_SHARE, KINDS, MassRepairRefused
from recalls.producers.publisher import Publisher
from recalls.producers.reconcile import SAMPLE, Reconciler, Reconciliation, SweepFailed, drift_rows
from recalls.shared.contracts import GetCommand
from recalls.shared.settings import Settings
from recalls.shared.store.batches import Batches, BatchStatus
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.shared.validation import InvalidCommand, validate

_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@click.command()
@click.option("--vin", "vins", multiple=True, metavar="VIN", help="Sweep only this vehicle (repeatable).")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Sweep only vehicles whose ledger entries changed on or after this day (UTC).",
)
@click.option("--repair", is_flag=True, help="Bring DVSA back in line with the ledger (never deletes).")
@click.option(
    "--max-repair-share",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_REPAIR_SHARE,
    show_default=True,
    help="Refuse repairs that touch more than this share of the vehicles swept.",
)
@click.option("--allow-mass-repair", is_flag=True, help="Repair even when the share above is exceeded.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the drift report.  [default: reconcile-<batch id>.csv]",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write recalls_drift_total{kind} and the sweep's figures here (Prometheus text format).",
)
@json_option
def reconcile(
    *,
    vins: tuple[str, ...],
    since: dt.datetime | None,
    repair: bool,
    max_repair_share: float,
    allow_mass_repair: bool,
    report: Path | None,
    metrics_file: Path | None,
    as_json: bool,
) -> None:
    """Check every vehicle of the ledger at DVSA and report where they differ (exit 3 on drift)."""
    for vin in vins:
        try:
            validate(GetCommand(vin=vin))  # the fleet's own rule for a VIN
        except InvalidCommand as exc:
            raise InputError(f"--vin {vin!r}: not a VIN ({exc})") from None
    settings = errors.settings()
    since_utc = since.replace(tzinfo=dt.UTC) if since else None
    share = 1.0 if allow_mass_repair else max_repair_share
    found = run_with_broker(_run(settings, list(vins), since_utc, share if repair else None), settings)
    path = report or Path(f"reconcile-{found.batch_id}.csv")
    _write_report(path, found)
    if metrics_file is not None:
        _write_metrics(metrics_file, found)
    summary = _summary(found, path)
    if as_json:
        print_json(summary)
    else:
        _show(summary)
    raise SystemExit(_exit_code(found))


async def _run(
    settings: Settings, vins: list[str], since: dt.datetime | None, max_share: float | None
) -> Reconciliation:
    # The store is opened as it is: with none there is nothing to reconcile, and none is made.
    return await in_store(settings, lambda db: _sweep(settings, db, vins, since, max_share))


async def _sweep(
    settings: Settings, db: Database, vins: list[str], since: dt.datetime | None, max_share: float | None
) -> Reconciliation:
    async with (
        Publisher.connect(publisher_config(settings, name="recalls-cli reconcile")) as publisher,
        _progress() as show,
    ):
        ledger = Ledger(db)
        reconciler = Reconciler(publisher, ledger, Batches(db), on_progress=show)
        pages = ledger.vin_pages(only=vins, since=since)
        first = await anext(pages, None)
        if first is None:
            raise InputError(
                "the ledger holds no vehicle to sweep" + (" for those filters" if vins or since else "")
            )
        source = _source(vins, since)
        try:
            found = await reconciler.sweep(_then(first, pages), source=source)
            if max_share is not None and found.repairs:
                try:
                    await reconciler.repair(found, max_share=max_share)
                except MassRepairRefused as exc:
                    found.refused = str(exc)
        except SweepFailed as exc:
            raise ServiceError(str(exc)) from None
        return found


async def _then(first: list[str], rest: AsyncIterator[list[str]]) -> AsyncIterator[list[str]]:
    """``first``, then what ``rest`` yields: the pages of a sweep once the first has shown there is one."""
    yield first
    async for page in rest:
        yield page


def _source(vins: list[str], since: dt.datetime | None) -> str:
    parts = ["reconcile"]
    if vins:
        parts.append(f"{len(vins)} VINs")
    if since:
        parts.append(f"since {since.date()}")
    return " ".join(parts)


@contextlib.asynccontextmanager
async def _progress() -> AsyncIterator[Callable[[BatchStatus], None]]:
    with progress_bar("sweeping") as (bar, task):

        def show(status: BatchStatus) -> None:
            figures = f"{status.processed:,} of {status.total:,} answered · batch {status.id}"
            bar.update(
                task, description=status.kind, total=status.total, completed=status.processed, figures=figures
            )

        yield show


def _safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: DVSA's references are not ours to trust (CSV injection)."""
    return f"'{value}" if value.startswith(_CSV_FORMULA_START) else value


def _write_report(path: Path, found: Reconciliation) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["vin", "campaign", "kind", "ledger_says", "dvsa_says"])
        writer.writeheader()
        for row in drift_rows(found.drifts):
            writer.writerow({name: _safe_cell(value) for name, value in row.items()})
    path.chmod(0o600)


def _write_metrics(path: Path, found: Reconciliation) -> None:
    registry = CollectorRegistry()
    drift = Counter("recalls_drift", "Drifts the last reconcile sweep found.", ["kind"], registry=registry)
    for kind, count in found.counts().items():
        drift.labels(kind=kind).inc(count)
    figures = {
        "recalls_reconcile_swept_vehicles": ("Vehicles the last sweep asked DVSA about.", found.swept),
        "recalls_reconcile_unchecked_vehicles": (
            "Vehicles the last sweep got no answer for.",
            len(found.unchecked),
        ),
        "recalls_reconcile_last_run_timestamp_seconds": (
            "When the last sweep ended.",
            dt.datetime.now(dt.UTC).timestamp(),
        ),
    }
    for name, (help_text, value) in figures.items():
        Gauge(name, help_text, registry=registry).set(value)
    write_to_textfile(str(path), registry)


def _summary(found: Reconciliation, report: Path) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "batch_id": found.batch_id,
        "swept": found.swept,
        "unchecked": len(found.unchecked),
        "unchecked_sample": found.unchecked[:SAMPLE],
        "drift": found.counts(),
        "sample": list(drift_rows(found.drifts[:SAMPLE])),
        "report": str(report),
        "repair": None,
    }
    if found.refused is not None:
        summary["repair"] = {"refused": found.refused}
    elif found.repair_batch is not None or any(r.record for r in found.repairs):
        done = found.repair_batch
        summary["repair"] = {
            "batch_id": done.id if done else None,
            "commands": done.total if done else 0,
            "applied": (done.succeeded + done.already_applied) if done else 0,
            "failed": done.failed if done else 0,
            "recorded_in_ledger": sum(1 for r in found.repairs if r.record is not None),
            "not_repaired": [
                {"vin": r.drift.vin, "campaign": r.drift.campaign, "reason": r.not_repaired}
                for r in found.repairs
                if r.not_repaired
            ][:SAMPLE],
        }
    return summary


def _show(summary: dict[str, Any]) -> None:
    click.echo(
        f"reconcile batch {summary['batch_id']}: {summary['swept']:,} vehicles swept, "
        f"{summary['unchecked']:,} without an answer"
    )
    for kind in KINDS:
        click.echo(f"  {kind:<18} {summary['drift'][kind]:,}")
    for row in summary["sample"]:
        click.echo(
            f"    {row['vin']} {row['campaign']}: {row['kind']} (ledger {row['ledger_says']}, "
            f"DVSA {row['dvsa_says']})"
        )
    click.echo(f"report: {summary['report']}")
    repaired = summary["repair"]
    if repaired is None:
        return
    if "refused" in repaired:
        click.echo(f"error: repair refused: {repaired['refused']}", err=True)
        return
    click.echo(
        f"repair: {repaired['applied']:,} of {repaired['commands']:,} commands applied at DVSA, "
        f"{repaired['failed']:,} failed, {repaired['recorded_in_ledger']:,} campaigns recorded in the ledger"
        + (f" (batch {repaired['batch_id']})" if repaired["batch_id"] else "")
    )
    for skipped in repaired["not_repaired"]:
        click.echo(f"    not repaired: {skipped['vin']} {skipped['campaign']}: {skipped['reason']}")


def _exit_code(found: Reconciliation) -> int:
    if found.drifts:
        return errors.FINDINGS
    return errors.FAILED if found.unchecked else errors.OK
