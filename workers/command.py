"""``recalls worker``: run a worker process until SIGTERM or SIGINT, then stop gracefully (exit 0)."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from shared import logs
from shared.settings import Settings, SettingsError, load_settings
from workers.runtime import Worker, dvsa_client


async def serve(settings: Settings) -> None:
    async with dvsa_client(settings) as dvsa:
        worker = Worker(settings, dvsa)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()


@click.command()
@click.option("--prefetch", type=click.IntRange(1, 1000), help="Unacked commands per queue.")
def worker(prefetch: int | None) -> None:
    """Consume recall commands from RabbitMQ and apply them to DVSA."""
    try:
        overrides = {"prefetch": prefetch} if prefetch else {}
        settings = load_settings(**overrides)
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    logs.configure(settings)
    asyncio.run(serve(settings))
