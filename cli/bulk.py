"""The ``recalls import`` and ``recalls sync`` commands: bulk work from DVSA's SFTP CSV format.

Both show a progress bar on stderr (percent of the file read, time left, rows read, published, rejected,
rate), end with a summary and the batch id (``recalls batch status ID``), and stop cleanly on Ctrl-C:
what was published is recorded, and the same command run again continues without publishing anything
twice.  Exit 3 when rows were rejected (their report is named), 1 when some were not confirmed by
RabbitMQ, 130 when stopped by Ctrl-C: each says to run the same command again where that helps.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import click

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.output import json_option, print_json
from recalls.cli.tables import progress_bar
from recalls.producers.importer import Importer, ImportProgress
from recalls.producers.publish_process import PublisherProcess
from recalls.producers.reject_report import report_path
from recalls.producers.snapshot_csv import UnreadableFile
from recalls.producers.sync import (
    DEFAULT_MAX_FIX_SHARE,
    SAMPLE,
    MassFixRefused,
    SyncPlan,
    check_mass_fix,
    plan_sync,
    run_sync,
    snapshot_date,
)
from recalls.shared.settings import Settings
from recalls.shared.store.batches import Batches
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger

_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.command(name="import")
@click.argument("file", type=_FILE)
@json_option
def import_(file: Path, as_json: bool) -> None:
    """Publish FILE's rows (DVSA's SFTP CSV format) as creates in the bulk lane: the historic load."""
    settings = errors.settings()

    async def work(importer: Importer, stop: asyncio.Event) -> ImportProgress:
        return await importer.run(file, stop)

    _finish(run_with_broker(_bulk_run(settings, work), settings), as_json=as_json)


@click.command()
@click.argument("file", type=_FILE)
@click.option("--dry-run", is_flag=True, help="Print the plan (counts and a sample); publish nothing.")
@click.option(
    "--date",
    "rectification_date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Rectification date of the fixes.  [default: the date in FILE's name, else today]",
)
@click.option(
    "--max-fix-share",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_FIX_SHARE,
    show_default=True,
    help="Refuse a snapshot that would fix more than this share of the open recalls.",
)
@click.option("--allow-mass-fix", is_flag=True, help="Publish even when the share above is exceeded.")
@json_option
def sync(
    *,
    file: Path,
    dry_run: bool,
    rectification_date: dt.datetime | None,
    max_fix_share: float,
    allow_mass_fix: bool,
    as_json: bool,
) -> None:
    """Bring DVSA in line with FILE, a full daily snapshot: create new rows, fix recalls it lacks."""
    settings = errors.settings()
    day = rectification_date.date() if rectification_date else snapshot_date(file, dt.date.today())

    plans: list[SyncPlan] = []

    async def work(importer: Importer, stop: asyncio.Event) -> ImportProgress | None:
        plan = await plan_sync(importer.ledger, file, day)
        plans.append(plan)
        if not as_json:
            _show_plan(plan)
        if dry_run:
            return None
        try:
            check_mass_fix(plan, 1.0 if allow_mass_fix else max_fix_share)
        except MassFixRefused as exc:
            raise errors.InputError(str(exc)) from None
        return await run_sync(importer, plan, stop)

    done = run_with_broker(_bulk_run(settings, work), settings)
    _finish(done, as_json=as_json, plan=_plan_summary(plans[0]) if plans else None)


async def _bulk_run(
    settings: Settings,
    work: Callable[[Importer, asyncio.Event], Awaitable[ImportProgress | None]],
) -> ImportProgress | None:
    async with (
        Database.connect(settings) as db,
        PublisherProcess.start(settings, name="recalls-cli bulk") as publisher,
        _progress_bar() as show,
        _ctrl_c() as stop,
    ):
        importer = Importer(publisher, Ledger(db), Batches(db), on_progress=show)
        try:
            return await work(importer, stop)
        except* UnreadableFile as group:  # what was published before it stays journaled: a re-run goes on
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise errors.InputError(str(first)) from None


@contextlib.asynccontextmanager
async def _ctrl_c() -> AsyncIterator[asyncio.Event]:
    """Ctrl-C sets the event: the run finishes the chunk in hand, records it, and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        yield stop
    finally:
        loop.remove_signal_handler(signal.SIGINT)


@contextlib.asynccontextmanager
async def _progress_bar() -> AsyncIterator[Callable[[ImportProgress], None]]:
    with progress_bar("reading") as (bar, task):

        def show(progress: ImportProgress) -> None:
            figures = (
                f"{progress.rows_read:,} read · {progress.published:,} published · "
                f"{progress.rejected:,} rejected · {progress.rows_per_second:,.0f} rows/s"
            )
            bar.update(task, total=progress.size_chars, completed=progress.chars_read, figures=figures)

        yield show


def _show_plan(plan: SyncPlan) -> None:
    click.echo(
        f"snapshot {plan.snapshot.name} ({plan.rectification_date}): {plan.rows_read:,} rows, "
        f"{plan.rejected:,} rejected, {plan.unchanged:,} unchanged"
    )
    click.echo(f"  create {plan.creates:,} recalls new to the ledger")
    for command in plan.create_sample:
        click.echo(f"    + {command.vin} {command.manufacturer_campaign_reference}")
    click.echo(
        f"  fix    {len(plan.fixes):,} of {plan.open_before:,} open recalls missing from the snapshot "
        f"({plan.fix_share:.1%}), rectification date {plan.rectification_date}"
    )
    for fix in plan.fixes[:SAMPLE]:
        click.echo(f"    ~ {fix.vin} {fix.manufacturer_campaign_reference}")


def _plan_summary(plan: SyncPlan) -> dict[str, object]:
    return {
        "snapshot": str(plan.snapshot),
        "rectification_date": plan.rectification_date,
        "rows_read": plan.rows_read,
        "rejected": plan.rejected,
        "unchanged": plan.unchanged,
        "creates": plan.creates,
        "fixes": len(plan.fixes),
        "open_before": plan.open_before,
        "fix_share": plan.fix_share,
        "create_sample": [[c.vin, c.manufacturer_campaign_reference] for c in plan.create_sample],
        "fix_sample": [[f.vin, f.manufacturer_campaign_reference] for f in plan.fixes[:SAMPLE]],
    }


def _finish(progress: ImportProgress | None, *, as_json: bool, plan: dict[str, object] | None = None) -> None:
    """Print the summary, then exit as :mod:`recalls.cli.errors` says for what the run left to do."""
    if as_json:
        ran = None if progress is None else _run_summary(progress)
        print_json(ran if plan is None else {"plan": plan, "run": ran})
    else:
        _tell(progress)
    if progress is None:
        return
    if progress.stopped:
        raise SystemExit(errors.STOPPED)
    if progress.failed_to_publish:
        raise SystemExit(errors.FAILED)
    if progress.rejected:
        raise SystemExit(errors.FINDINGS)


def _run_summary(progress: ImportProgress) -> dict[str, object]:
    return {
        "batch_id": progress.batch_id,
        "rows_read": progress.rows_read,
        "published": progress.published,
        "rejected": progress.rejected,
        "rejected_report": str(report_path(progress.source)) if progress.rejected else None,
        "duplicates": progress.duplicates,
        "in_ledger": progress.in_ledger,
        "failed_to_publish": progress.failed_to_publish,
        "stopped": progress.stopped,
        "seconds": round(progress.seconds, 3),
    }


def _tell(progress: ImportProgress | None) -> None:
    if progress is None:
        click.echo("dry run: nothing published")
        return
    click.echo(
        f"batch {progress.batch_id}: {progress.rows_read:,} rows read, {progress.published:,} published, "
        f"{progress.rejected:,} rejected, {progress.duplicates:,} duplicates or published before, "
        f"{progress.in_ledger:,} already in the ledger; {progress.seconds:.1f} s "
        f"({progress.rows_per_second:,.0f} rows/s)"
    )
    if progress.rejected:
        click.echo(f"rejected rows: {report_path(progress.source)}")
    if progress.failed_to_publish:
        click.echo(f"{progress.failed_to_publish:,} not confirmed by RabbitMQ: run the command again")
    if progress.stopped:
        click.echo("stopped by Ctrl-C: run the same command again to continue")
    else:
        click.echo(f"follow it with: recalls batch status {progress.batch_id}")
