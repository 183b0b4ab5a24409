"""The batch API as an operator runs it, a ``recalls api`` child: what a huge body does to it.

The child gets the test's settings through the environment (as ``worker_env`` builds it, plus any
variables given) and is waited for until uvicorn says it serves; a child still running at the end is
stopped with SIGTERM.

Sent 20 MB without a key, it answers 413 holding none of it: its RSS, and the peak of it, grow by far
less.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.integration.conftest import base_settings, worker_env
from tests.support.batch_api import API, LIGHT, assert_error, delete_topology
from tests.support.commands import vin
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

_SERVING = b"Uvicorn running on "


@dataclass
class ApiProcess:
    """A running ``recalls api`` child: its process, its base URL, and what it wrote to stderr."""

    process: asyncio.subprocess.Process
    url: str
    stderr: list[bytes] = field(default_factory=list)

    def memory_kb(self, name: str) -> int:
        """A figure of ``/proc/<pid>/status`` in kB, e.g. ``VmRSS`` or ``VmHWM`` (the peak RSS)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith(f"{name}:"))
        return int(line.split()[1])

    def reset_peak(self) -> None:
        """Make ``VmHWM`` start again from the current RSS (the kernel's clear_refs, value 5)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    async def kill(self) -> None:
        """SIGKILL: nothing of the child runs on, no shutdown, no drain."""
        self.process.kill()
        await self.process.wait()

    def output(self) -> str:
        return b"".join(self.stderr).decode(errors="replace")


@contextlib.asynccontextmanager
async def api_process(settings: Settings, **variables: str) -> AsyncIterator[ApiProcess]:
    """``recalls api`` on ``settings`` (and ``variables``), once it serves; stopped at the end."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from cli.main import main; main()",
        "api",
        "--port",
        str(port),
        env=worker_env(settings, **variables),
        stderr=asyncio.subprocess.PIPE,
    )
    child = ApiProcess(process, f"http://127.0.0.1:{port}")
    serving = asyncio.Event()
    pumping = asyncio.create_task(_pump(child, serving))
    try:
        started = {asyncio.ensure_future(serving.wait()), asyncio.ensure_future(process.wait())}
        async with asyncio.timeout(60):
            _, waiting = await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
        for each in waiting:
            each.cancel()
        assert serving.is_set(), f"recalls api exited at start:\n{child.output()}"
        yield child
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        await pumping


async def _pump(child: ApiProcess, serving: asyncio.Event) -> None:
    stream = child.process.stderr
    assert stream is not None
    while line := await stream.readline():
        child.stderr.append(line)
        if _SERVING in line:
            serving.set()


async def test_a_20_mb_body_without_a_key_is_refused_and_never_held(prefix: str, store_path: Path) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    item = f'"{vin(1)}",'.encode()
    body = b'{"vins": [' + item * (20_000_000 // len(item)) + f'"{vin(2)}"]}}'.encode()
    try:
        async with api_process(settings) as api, httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            assert (await http.get("/openapi.json")).status_code == 200  # warmed up: the app is loaded
            before = api.memory_kb("VmRSS")
            api.reset_peak()
            response = await http.post(
                f"{API}/submit", content=body, headers={"content-type": "application/json"}
            )
            grown, peak = api.memory_kb("VmRSS") - before, api.memory_kb("VmHWM") - before
    finally:
        await delete_topology(settings)
    assert_error(response, 413, "BULK_RECALL_BATCH_TOO_LARGE", "body: larger than 2000000 bytes")
    assert grown < 20_000 and peak < 20_000, (grown, peak)  # kB: the body never sat in its memory
