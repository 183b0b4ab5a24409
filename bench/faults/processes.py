"""The processes a fault run drives: the DVSA sandbox and the worker processes, killable and restartable."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from bench import fleet_throughput
from recalls.cli import sandbox_process
from recalls.shared.settings import Settings

Json = dict[str, Any]
STOP_WAIT = 60.0  # seconds a SIGTERMed worker has to finish its in-flight commands


def resident_mb(pid: int) -> float:
    """VmRSS of one process, in MB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    lines = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return round(int(lines[0].split()[1]) / 1024, 1) if lines else 0.0


class SandboxControl:
    """A DVSA sandbox child process and its admin API."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self._process = process
        self._admin = httpx.AsyncClient(base_url=url, timeout=30)

    @classmethod
    async def start(
        cls, settings: Settings, flags: tuple[str, ...], env: Mapping[str, str]
    ) -> SandboxControl:
        url, process = await asyncio.to_thread(sandbox_process.start, settings, *flags, env=env)
        return cls(url, process)

    async def stop(self) -> None:
        await self._admin.aclose()
        await asyncio.to_thread(sandbox_process.stop, self._process)

    async def faults(self, **faults: float) -> Json:
        """Change the faults in force (any subset of ``recalls.sandbox.faults`` settings); the new set."""
        return await self._call("PUT", "/__admin/faults", json=faults)  # type: ignore[no-any-return]

    async def recalls(self) -> list[Json]:
        return list(await self._call("GET", "/__admin/recalls"))

    async def stats(self) -> Json:
        return dict(await self._call("GET", "/__admin/stats"))

    async def requests(self) -> list[Json]:
        """The request journal, oldest first."""
        return list(await self._call("GET", "/__admin/requests"))

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._admin.request(method, path, **kwargs)
        return response.raise_for_status().json()


class WorkerProcess:
    """One ``recalls worker`` child; the harness may kill it and start it again, and counts its crashes."""

    def __init__(self, env: Mapping[str, str], metrics_port: int) -> None:
        self.metrics_port = metrics_port
        self.crashes = 0  # exits the harness did not cause
        self.exits: list[str] = []  # how each unexpected exit ended: code and last log lines
        self._env = dict(env)
        self._running: fleet_throughput.WorkerProcess | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int:
        return self._running.process.pid if self._running is not None else 0

    async def start(self) -> None:
        """Start the process and return once it consumes (a no-op while it runs)."""
        if self.alive():
            return
        self._stopping = False
        self._running = await fleet_throughput.start_worker(self._env)
        self._watch = asyncio.create_task(self._watch_exit(self._running))

    def alive(self) -> bool:
        return self._running is not None and self._running.process.returncode is None

    def rss_mb(self) -> float:
        return resident_mb(self.pid) if self.alive() else 0.0

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to exit (a SIGTERM is given STOP_WAIT s, then SIGKILL)."""
        if self._running is None or self._watch is None:
            return
        self._stopping = True
        if self._running.process.returncode is None:
            self._running.process.send_signal(sig)
        try:
            await asyncio.wait_for(asyncio.shield(self._watch), STOP_WAIT)
        except TimeoutError:
            print(f"worker {self.pid} alive {STOP_WAIT:g} s after signal {sig}: killed", file=sys.stderr)
            self._running.process.kill()
            await self._watch

    async def _watch_exit(self, running: fleet_throughput.WorkerProcess) -> None:
        code = await running.process.wait()
        if running.reader is not None:
            await running.reader
        if not self._stopping:
            self.crashes += 1
            self.exits.append(f"exit {code}: " + " | ".join(running.tail))
