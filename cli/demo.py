"""``recalls demo``: the main job end to end on this machine, narrated.

Starts a DVSA sandbox, a worker, and a publisher; publishes a script of commands (including one the
fleet refuses before queueing and one fix that arrives before its create); waits for every outcome
event; then shows the outcomes, what the sandbox now holds and its rate-limit figures.  It runs under
its own prefix and removes its queues afterwards, so it never touches a real deployment's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid

import click
import httpx
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from rich.console import Console
from rich.table import Table

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.sandbox_process import pointed_at, sandbox_process
from recalls.producers.publisher import Publisher
from recalls.shared.amqp import connect
from recalls.shared.contracts import (
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    OutcomeEvent,
)
from recalls.shared.dvsa.client import DvsaClient
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology, delete, topology_of
from recalls.shared.validation import InvalidCommand
from recalls.workers.runtime import Worker, dvsa_client

START = dt.date(2025, 9, 1)


def script() -> list[Command]:
    """Four vehicles' worth of recall work, in the order an enterprise system might send it."""
    a, b, c = "SALGA2EV5HA123456", "WVWZZZ1JZ3W386752", "SAJAA06E5GP12345"  # the last: a 16-char VIN
    return [
        FixCommand(
            vin=c, manufacturer_campaign_reference="RC-2025-07", rectification_date=dt.date(2025, 10, 2)
        ),
        CreateCommand(vin=a, manufacturer_campaign_reference="RC-2025-07", recall_campaign_start_date=START),
        CreateCommand(
            vin=b,
            manufacturer_campaign_reference="RC-2025-07",
            dvsa_campaign_reference="R/2025/101",
            recall_campaign_start_date=START,
        ),
        CreateCommand(vin=c, manufacturer_campaign_reference="RC-2025-07", recall_campaign_start_date=START),
        CreateCommand(vin=b, manufacturer_campaign_reference="RC-2025-09", recall_campaign_start_date=START),
        FixCommand(
            vin=a, manufacturer_campaign_reference="RC-2025-07", rectification_date=dt.date(2025, 10, 1)
        ),
        DeleteCommand(vin=b, manufacturer_campaign_reference="RC-2025-09"),
    ]


async def run_demo(settings: Settings, console: Console) -> int:
    async with sandbox_process(settings) as url:
        settings = pointed_at(settings, url)
        console.print(f"[bold]1.[/] DVSA sandbox started at {url} (strict {settings.rate_limit}/s per verb)")
        connection = await connect(settings.amqp_url.get_secret_value(), name="recalls-demo")
        async with connection, dvsa_client(settings) as dvsa:
            topology = topology_of(settings)
            channel = await connection.channel()
            try:
                return await _narrate(
                    settings, console, connection=connection, channel=channel, dvsa=dvsa, topology=topology
                )
            finally:
                await delete(channel, topology)


async def _narrate(
    settings: Settings,
    console: Console,
    *,
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    dvsa: DvsaClient,
    topology: Topology,
) -> int:
    async with Publisher.on_connection(connection, topology, declare=True) as publisher:
        outcomes = await _subscribe(channel, topology)
        worker = Worker(settings, dvsa)
        worker_task = asyncio.create_task(worker.run())
        await worker.ready.wait()
        console.print(f"[bold]2.[/] worker consuming {topology.prefix}.{{create,fix,delete,get}}")
        commands = script()
        bad = CreateCommand(
            vin="NOT-A-VIN", manufacturer_campaign_reference="RC-1", recall_campaign_start_date=START
        )
        try:
            await publisher.publish(bad)
        except InvalidCommand as exc:
            console.print(f"[bold]3.[/] refused before queueing, as DVSA would refuse it: [red]{exc}[/]")
        for command in commands:
            await publisher.publish(command)
        console.print(
            f"[bold]4.[/] published {len(commands)} commands with publisher confirms; waiting for outcomes"
        )
        async with asyncio.timeout(60):
            events = await _collect(outcomes, {c.message_id for c in commands})
        # Verbs travel in separate queues, so a read is only meaningful once the writes are done.
        reads = [GetCommand(vin=vin) for vin in dict.fromkeys(c.vin for c in commands)]
        for command in reads:
            await publisher.publish(command)
        console.print(f"[bold]5.[/] all writes settled; published {len(reads)} gets to read DVSA back")
        async with asyncio.timeout(60):
            events |= await _collect(outcomes, {c.message_id for c in reads})
        commands += reads
        worker.stop()
        await worker_task
    _show_outcomes(console, commands, events)
    await _show_sandbox(console, settings)
    ok = all(event.result != "failed" for event in events.values())
    console.print(
        f"[bold]Done:[/] {len(events)}/{len(commands)} commands reached DVSA; "
        + ("all applied." if ok else "some FAILED.")
    )
    return 0 if ok and len(events) == len(commands) else 1


async def _subscribe(channel: AbstractChannel, topology: Topology) -> asyncio.Queue[OutcomeEvent]:
    received: asyncio.Queue[OutcomeEvent] = asyncio.Queue()

    async def on_event(message: AbstractIncomingMessage) -> None:
        async with message.process():
            await received.put(msgspec.json.decode(message.body, type=OutcomeEvent))

    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.events_exchange, routing_key="recall.#")
    await queue.consume(on_event)
    return received


async def _collect(received: asyncio.Queue[OutcomeEvent], wanted: set[str]) -> dict[str, OutcomeEvent]:
    events: dict[str, OutcomeEvent] = {}
    while wanted - events.keys():
        event = await received.get()
        events[event.message_id] = event
    return events


def _show_outcomes(console: Console, commands: list[Command], events: dict[str, OutcomeEvent]) -> None:
    table = Table(title="Outcome events (from the events exchange)")
    for column in ("verb", "vin", "campaign", "result", "DVSA status", "attempts", "DVSA ms"):
        table.add_column(column)
    for command in commands:
        event = events[command.message_id]
        recalls = f" ({len(event.recalls)} recalls)" if event.recalls is not None else ""
        table.add_row(
            event.verb,
            event.vin,
            event.manufacturer_campaign_reference or "",
            event.result + recalls,
            str(event.dvsa_status),
            str(event.attempts),
            f"{event.dvsa_ms:.1f}" if event.dvsa_ms is not None else "",
        )
    console.print(table)


async def _show_sandbox(console: Console, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as admin:
        state = (await admin.get("/__admin/recalls")).json()
        stats = (await admin.get("/__admin/stats")).json()
    table = Table(title="What the DVSA sandbox now holds")
    for column in ("vin", "manufacturer ref", "DVSA ref", "start", "status"):
        table.add_column(column)
    for recall in state:
        table.add_row(
            recall["vin"],
            recall["manufacturerCampaignReference"],
            recall.get("dvsaCampaignReference") or "",
            recall["recallCampaignStartDate"],
            recall["repairStatus"],
        )
    console.print(table)
    summary = ", ".join(
        f"{verb}: {figures['count']} calls, {figures['throttled']} x 429, max {figures['max_in_window']}/s"
        for verb, figures in stats.items()
        if isinstance(figures, dict) and "count" in figures
    )
    console.print(f"Sandbox figures: {summary}")


@click.command()
def demo() -> None:
    """Show the fleet doing its job end to end against a local DVSA sandbox."""
    console = Console(width=None if sys.stdout.isatty() else 120)
    settings = errors.settings(prefix=f"recalls-demo-{uuid.uuid4().hex[:6]}")
    if not settings.uses_sandbox:
        raise errors.InputError(
            "RECALLS_DVSA_BASE_URL: the demo runs against the local sandbox only; unset it"
        )
    raise SystemExit(run_with_broker(run_demo(settings, console), settings))
