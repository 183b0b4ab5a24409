"""The ledger's PostgreSQL crashes under load and starts again: no outcome goes unrecorded.

Three fleet-mode workers keep their ledger in a PostgreSQL server of the run's own
(:mod:`bench.faults.postgres`), migrated first as an operator would.  Mid-run the server stops as a
crash stops it (no checkpoint) and starts again some seconds later.  The workers write the ledger
before they report (and the recorder after), so while the store is away commands wait, unacked, and
go on once it is back.  The promises: nothing lost, nothing applied twice, no 429; and every recall of
the workload in the ledger, in the state DVSA holds, once the recorder has caught up after the last
outcome (reported: how long that took).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench.faults.figures import Figures
from bench.faults.harness import Mode, fault_run
from bench.faults.postgres import private_server
from bench.faults.workload import Workload
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.database import Database
from recalls.shared.store.ledger import Ledger

WORKERS = 3
RECORDING_PATIENCE = 60.0  # seconds the recorder has, after the last outcome, to catch up
LEDGER_STATE = {"NOT_FIXED": "open", "FIXED": "fixed", "absent": "deleted"}


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(1200, 3000))
    restarts: list[dict[str, float]] = []
    async with private_server() as store:
        settings = load_settings(database_url=store.url)
        async with Database.opened(settings) as db:
            await db.migrate()
        ledger = {"RECALLS_DATABASE_URL": store.url}
        async with fault_run("store_restart", workers=WORKERS, worker_env=ledger) as fleet:
            await fleet.publish(workload.commands)
            for n in range(mode.size(1, 2)):
                await asyncio.sleep(mode.size(3, 8))  # the scenario's cadence: the fleet at pace first
                fleet.fault(f"PostgreSQL crashed #{n + 1}")
                began = time.time()
                await store.crash()
                await asyncio.sleep(mode.size(3, 10))  # the outage's length is the fault itself
                await store.start()
                restarts.append({"down_s": round(time.time() - began, 1)})
            stalled = await fleet.stall(workload.message_ids, timeout=mode.size(180, 400))
            figures = await fleet.figures(workload)
            caught_up, unrecorded = await _caught_up(settings, workload)
    figures.mode = mode.name
    figures.extra |= {
        "workers": WORKERS,
        "restarts": restarts,
        "ledger_unrecorded": len(unrecorded),
        "ledger_caught_up_s": caught_up,
    }
    if unrecorded:
        figures.problem(
            f"{len(unrecorded)} recalls not in the ledger as DVSA holds them, e.g. {unrecorded[0]}"
        )
    if stalled:
        figures.problem(stalled)
    return figures


async def _caught_up(settings: Settings, workload: Workload) -> tuple[float | None, list[str]]:
    """Seconds after the last outcome until the ledger held every recall as DVSA does (None: it did
    not within :data:`RECORDING_PATIENCE`), and what it still lacked then.

    The harness hears each outcome when the recorder does; a recorder giving events back while the
    store was away writes them some moments later, so the ledger is read until it has caught up.
    """
    started = time.monotonic()
    while True:
        unrecorded = await _unrecorded(settings, workload)
        waited = time.monotonic() - started
        if not unrecorded:
            return round(waited, 1), []
        if waited > RECORDING_PATIENCE:
            return None, unrecorded
        await asyncio.sleep(0.5)  # the store has no event to await: read it again


async def _unrecorded(settings: Settings, workload: Workload) -> list[str]:
    """Each recall of the workload whose ledger entry is missing or in another state than DVSA's."""
    async with Database.connect(settings) as db:
        entries = await Ledger(db).for_vins({vin for vin, _ in workload.expected})
    held = {(e.vin, e.manufacturer_campaign_reference): e.state for found in entries.values() for e in found}
    return [
        f"{vin}/{reference}: ledger {held.get((vin, reference), 'missing')}, DVSA {end}"
        for (vin, reference), end in workload.expected.items()
        if held.get((vin, reference)) != LEDGER_STATE[end]
    ]
