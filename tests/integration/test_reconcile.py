"""``recalls reconcile`` finds exactly what changed at DVSA behind the fleet's back, and repairs it.

The ledger and the sandbox start out agreeing on every vehicle (both written directly, as a fleet that
ran for a while would have left them); then the sandbox's admin API changes some recalls out of band.
The sweep goes through the real fleet: the CLI publishes, a worker calls the sandbox and records the
answers.  The rate limit is raised (sandbox and fleet alike) so a thousand checks take seconds.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel
from click.testing import CliRunner, Result

from recalls.cli.main import cli
from recalls.shared.contracts import CreateCommand, GetCommand, OutcomeEvent
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger
from recalls.workers.runtime import Worker
from tests.integration.conftest import Sandbox, base_settings, publish, running_sandbox, worker_env
from tests.support.commands import vin
from tests.support.polling import poll_until

FAST = 250  # requests per second per verb, at the sandbox and in the fleet
START = "2025-09-01"
FIXED_ON = "2025-10-01"
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

pytestmark = pytest.mark.settings(rate_limit=FAST)


@pytest.fixture
async def sandbox(prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    """The sandbox at the test's rate limit (its ``settings`` marker's)."""
    rate = request.node.get_closest_marker("settings").kwargs["rate_limit"]
    async with running_sandbox(base_settings(prefix, rate_limit=rate)) as running:
        yield running


async def agreeing(sandbox: Sandbox, settings: Settings, count: int, fixed_every: int = 4) -> list[str]:
    """``count`` vehicles with campaign RC-1, every ``fixed_every``-th fixed, in the ledger and at DVSA."""
    cars = [vin(n) for n in range(count)]
    fixed = set(cars[::fixed_every])
    await sandbox.seed(
        [
            {
                "vin": car,
                "manufacturerCampaignReference": "RC-1",
                "recallCampaignStartDate": START,
                "repairStatus": "FIXED" if car in fixed else "NOT_FIXED",
                **({"rectificationDate": FIXED_ON} if car in fixed else {}),
            }
            for car in cars
        ]
    )
    events = [_event(car, "create") for car in cars] + [_event(car, "fix") for car in fixed]
    async with Database.connect(settings) as db:
        await Ledger(db).apply(*events)
    return cars


def _event(car: str, verb: str) -> OutcomeEvent:
    at = LONG_AGO + dt.timedelta(minutes=verb == "fix")
    return OutcomeEvent(
        message_id=f"{verb}-{car}",
        verb=verb,  # type: ignore[arg-type]
        vin=car,
        manufacturer_campaign_reference="RC-1",
        result="applied",
        dvsa_status=201 if verb == "create" else 204,
        attempts=1,
        issued_at=at,
        first_seen_at=at,
        completed_at=at,
        recall_campaign_start_date=dt.date.fromisoformat(START) if verb == "create" else None,
        rectification_date=dt.date.fromisoformat(FIXED_ON) if verb == "fix" else None,
        repair_status="FIXED" if verb == "fix" else None,
    )


async def reconcile(settings: Settings, tmp_path: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    """``recalls reconcile --json ARGS`` as a user runs it; its exit and its JSON summary."""
    report = str(tmp_path / f"report-{uuid.uuid4().hex[:8]}.csv")
    argv = ["reconcile", "--json", "--report", report, *args]
    result = await asyncio.to_thread(CliRunner().invoke, cli, argv, env=worker_env(settings))
    summary = json.loads(result.stdout) if result.stdout.strip() else {}
    return result, summary


def report_rows(summary: dict[str, Any]) -> set[tuple[str, ...]]:
    with Path(summary["report"]).open(newline="") as file:
        return {tuple(row.values()) for row in csv.DictReader(file)}


async def test_a_sweep_reports_what_changed_behind_the_fleets_back_and_repair_mends_it(
    settings: Settings, sandbox: Sandbox, worker: Worker, tmp_path: Path
) -> None:
    cars = await agreeing(sandbox, settings, 1000)
    removed, flipped, added = cars[1:40:4], cars[2:42:4], cars[3:43:4]  # 10 each, none fixed
    reopened = cars[0:40:4]  # 10 fixed ones
    for car in removed:
        await sandbox.remove(car, "RC-1")
    for car in flipped[:5]:
        await sandbox.set_status(car, "RC-1", "FIXED", "2026-02-02")
    for car in reopened[:5]:
        await sandbox.set_status(car, "RC-1", "NOT_FIXED")
    for car in added:
        await sandbox.seed(
            [{"vin": car, "manufacturerCampaignReference": "RC-X", "recallCampaignStartDate": START}]
        )
    expected = (
        {(car, "RC-1", "missing_at_dvsa", "open", "absent") for car in removed}
        | {(car, "RC-1", "status_differs", "open", "fixed") for car in flipped[:5]}
        | {(car, "RC-1", "status_differs", "fixed", "open") for car in reopened[:5]}
        | {(car, "RC-X", "unknown_to_ledger", "absent", "open") for car in added}
    )
    metrics = tmp_path / "drift.prom"

    swept, summary = await reconcile(settings, tmp_path, "--metrics-file", str(metrics))

    assert swept.exit_code == 3, swept.output
    assert (summary["swept"], summary["unchecked"]) == (1000, 0)
    assert summary["drift"] == {"missing_at_dvsa": 10, "status_differs": 10, "unknown_to_ledger": 10}
    assert report_rows(summary) == expected
    assert 'recalls_drift_total{kind="missing_at_dvsa"} 10.0' in metrics.read_text()
    shown = await asyncio.to_thread(
        CliRunner().invoke, cli, ["batch", "status", summary["batch_id"], "--json"], env=worker_env(settings)
    )
    batch = json.loads(shown.stdout)
    assert (batch["kind"], batch["status"], batch["total"], batch["processed"]) == (
        "reconcile",
        "completed",
        1000,
        1000,
    )
    async with Database.connect(settings) as db:  # the sweep's answers did not overwrite the ledger
        entries = await Ledger(db).for_vins(flipped[:5])
    assert [entry.state for car in flipped[:5] for entry in entries[car]] == ["open"] * 5

    repaired, summary = await reconcile(settings, tmp_path, "--repair")

    assert repaired.exit_code == 3, repaired.output
    assert summary["repair"]["commands"] == 20  # 10 creates, 10 fixes
    assert (summary["repair"]["applied"], summary["repair"]["failed"]) == (20, 0)
    assert summary["repair"]["recorded_in_ledger"] == 10

    again, summary = await reconcile(settings, tmp_path)

    assert again.exit_code == 0, again.output
    assert summary["drift"] == {"missing_at_dvsa": 0, "status_differs": 0, "unknown_to_ledger": 0}
    assert report_rows(summary) == set()
    at_dvsa = {
        (r["vin"], r["manufacturerCampaignReference"]): r["repairStatus"] for r in await sandbox.recalls()
    }
    assert all(at_dvsa[(car, "RC-1")] == "NOT_FIXED" for car in [*removed, *flipped])
    assert all(at_dvsa[(car, "RC-1")] == "FIXED" for car in reopened)


async def test_a_mass_repair_is_refused_unless_allowed(
    settings: Settings, sandbox: Sandbox, worker: Worker, tmp_path: Path
) -> None:
    cars = await agreeing(sandbox, settings, 50)
    lost = cars[1:41:2]  # 20 of 50: 40%
    for car in lost:
        await sandbox.remove(car, "RC-1")

    refused, summary = await reconcile(settings, tmp_path, "--repair")

    assert refused.exit_code == 3, refused.output  # drift found; its repair refused
    assert "20 of 50 vehicles swept (40.0%" in summary["repair"]["refused"]
    assert "--allow-mass-repair" in refused.output
    held = {r["vin"] for r in await sandbox.recalls()}
    assert held.isdisjoint(lost)  # nothing was sent

    allowed, summary = await reconcile(settings, tmp_path, "--repair", "--allow-mass-repair")

    assert allowed.exit_code == 3, allowed.output
    assert summary["repair"]["applied"] == 20
    assert {r["vin"] for r in await sandbox.recalls()} >= set(lost)


@pytest.mark.settings(rate_limit=25)
async def test_live_work_goes_ahead_of_a_sweep(
    settings: Settings, sandbox: Sandbox, worker: Worker, channel: AbstractChannel, tmp_path: Path
) -> None:
    """At DVSA's own 25/s: a live get of the same verb goes ahead of the sweep's, a live create at once."""
    cars = await agreeing(sandbox, settings, 150)  # 6 s of gets
    sweeping = asyncio.create_task(reconcile(settings, tmp_path))
    await poll_until(sandbox.requests, lambda seen: sum(r["method"] == "GET" for r in seen) >= 25, timeout=30)
    before = len(await sandbox.requests())
    live_get, live_create = (
        GetCommand(vin=vin(5000)),
        CreateCommand(
            vin=vin(5001),
            manufacturer_campaign_reference="RC-LIVE",
            recall_campaign_start_date=dt.date(2026, 1, 1),
        ),
    )
    await publish(channel, settings, live_get)
    await publish(channel, settings, live_create)
    swept, summary = await sweeping

    assert (swept.exit_code, summary["swept"]) == (0, 150), swept.output
    journal = await sandbox.requests()
    sweep = {f"/recalls/vin/{car}" for car in cars}
    got = next(i for i, r in enumerate(journal) if r["path"] == f"/recalls/vin/{live_get.vin}")
    created = next(i for i, r in enumerate(journal) if r["method"] == "POST")
    ahead = [r for r in journal[before:got] if r["path"] in sweep]
    assert len(ahead) <= 3  # one booked, one in flight, one in the moment it took to publish
    assert any(r["path"] in sweep for r in journal[created:])  # the create did not wait for the sweep
