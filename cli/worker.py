"""``recalls worker``: run a worker process until SIGTERM or SIGINT, then stop gracefully (exit 0).

Exit 2 when it may not run as configured (settings, store, topology or a second rate budget): the
error line says how to mend it.  ``--processes N`` runs N such processes under one supervisor.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from recalls.cli import errors
from recalls.cli.main import recalls_command
from recalls.shared import event_loop, logs
from recalls.shared.gc_tuning import settle_after_startup
from recalls.shared.malloc_tuning import pin_mmap_threshold
from recalls.shared.settings import Settings
from recalls.shared.store.database import StoreError
from recalls.shared.topology import TopologyError
from recalls.workers.budget import Refused
from recalls.workers.runtime import Worker, dvsa_client
from recalls.workers.supervisor import supervise


async def serve(settings: Settings) -> int:
    """Run one worker until a signal stops it; the exit code (2: it may not run here as configured)."""
    async with dvsa_client(settings) as dvsa:
        worker = Worker(settings, dvsa)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        running = asyncio.create_task(worker.run())
        ready = asyncio.create_task(worker.ready.wait())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            settle_after_startup()
        ready.cancel()
        try:
            await running
        except (Refused, StoreError, TopologyError) as exc:
            # One line, no traceback: the configuration is at fault, and the line says how to mend it.
            click.echo(f"error: {exc}", err=True)
            return errors.BAD_INPUT
    return errors.OK


@click.command()
@click.option("--prefetch", type=click.IntRange(1, 1000), help="Unacked commands per queue.")
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes on this host, under one supervisor. More than one needs RECALLS_REDIS_URL.",
)
def worker(prefetch: int | None, processes: int) -> None:
    """Consume recall commands from RabbitMQ and apply them to DVSA."""
    settings = errors.settings(**({"prefetch": prefetch} if prefetch else {}))
    logs.configure(settings)
    pin_mmap_threshold()
    if processes == 1:
        sys.exit(event_loop.run(serve(settings)))
    if settings.redis_url is None:
        # Each process would keep its own 25/s: together they would exceed DVSA's limit.
        raise errors.InputError("--processes above 1 needs RECALLS_REDIS_URL (fleet mode)")
    child = recalls_command("worker", *(["--prefetch", str(prefetch)] if prefetch else []))
    sys.exit(event_loop.run(supervise(processes, child)))
