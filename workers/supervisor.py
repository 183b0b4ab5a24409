"""``recalls worker --processes N``: N worker processes on this host under one supervisor.

Each child runs the command line it is given (``recalls worker``, from the CLI), so a fleet of N here
behaves like N workers on N hosts (which need Redis, fleet mode, to share one rate budget).  SIGTERM
or SIGINT reaches every child, which stops gracefully; a child that dies on its own is restarted after a short
pause, so one crash does not shrink the fleet.  A child that refuses to start (exit 2: its settings,
or a second rate budget on the prefix) is not: the others would refuse alike, so the supervisor stops
them and exits 2 itself, and an orchestrator sees the refusal instead of a restart loop.  Only the
first child keeps the ledger from the outcome events (one recorder serves a host's fleet), unless
``RECALLS_RECORD_EVENTS`` says otherwise; with ``RECALLS_METRICS_PORT`` set, child k serves its
metrics on that port + k.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence

log = logging.getLogger("recalls.supervisor")
RESTART_PAUSE = 1.0
REFUSED = 2  # a child's exit code for a start it refuses, as the CLI's for settings to correct
RECORD_EVENTS = "RECALLS_RECORD_EVENTS"
METRICS_PORT = "RECALLS_METRICS_PORT"


class Supervisor:
    def __init__(self, processes: int, argv: Sequence[str]) -> None:
        self._count = processes
        self._argv = list(argv)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        """Run until stopped; return 0 when every child exited cleanly."""
        codes = await asyncio.gather(*(self._keep_running(index) for index in range(self._count)))
        return max(codes, default=0)

    async def _keep_running(self, index: int) -> int:
        while True:
            child = await asyncio.create_subprocess_exec(*self._argv, env=_child_env(index))
            log.info("worker process started", extra={"index": index, "pid": child.pid})
            stop = asyncio.create_task(self._stopping.wait())
            exited = asyncio.create_task(child.wait())
            await asyncio.wait({stop, exited}, return_when=asyncio.FIRST_COMPLETED)
            if self._stopping.is_set():
                if child.returncode is None:
                    child.send_signal(signal.SIGTERM)
                return await exited
            stop.cancel()
            if child.returncode == REFUSED:
                log.error("worker process refused to start; stopping", extra={"index": index})
                self._stopping.set()
                return REFUSED
            log.error("worker process died; restarting", extra={"index": index, "code": child.returncode})
            try:
                await asyncio.wait_for(self._stopping.wait(), RESTART_PAUSE)
                return 0
            except TimeoutError:
                continue


def _child_env(index: int) -> dict[str, str]:
    env = dict(os.environ)
    if index > 0 and RECORD_EVENTS not in env:
        env[RECORD_EVENTS] = "false"
    if index > 0 and env.get(METRICS_PORT, "").isdigit():
        env[METRICS_PORT] = str(int(env[METRICS_PORT]) + index)  # one port per process on a host
    return env


async def supervise(processes: int, argv: Sequence[str]) -> int:
    supervisor = Supervisor(processes, argv)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.stop)
    return await supervisor.run()
