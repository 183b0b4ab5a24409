"""The batch API as an operator runs it, a ``recalls api`` child: what a huge body and a SIGKILL do to it.

The child gets the test's settings through the environment (as ``worker_env`` builds it, plus any
variables given) and is waited for until uvicorn says it serves; a child still running at the end is
stopped with SIGTERM.

Sent 20 MB without a key, it answers 413 holding none of it: its RSS, and the peak of it, grow by far
less.  Killed after its 202 but before the broker saw a publish (it reaches RabbitMQ through a proxy
made to hold every byte just before the submit), it leaves the batch uploading with every check
unpublished; of two children then started at once, exactly one takes the batch once the dead one's
lease has run out and publishes the rest, and a worker completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest

from bench.faults.tcp_proxy import TcpProxy
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.batches import Batches, BatchStatus
from recalls.shared.store.database import Database
from recalls.shared.topology import Topology
from tests.integration.conftest import Sandbox, base_settings, running_worker, worker_env
from tests.support.batch_api import API, LIGHT, assert_error, delete_topology
from tests.support.commands import vin
from tests.support.polling import poll_until
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
        "from recalls.cli.main import main; main()",
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


# --- a huge body ----------------------------------------------------------------------------------------


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


# --- killed after a 202 ---------------------------------------------------------------------------------

VINS = [vin(700 + n) for n in range(20)]
RESUMED = b"publishing the rest"


async def test_a_batch_killed_after_its_202_is_published_once_after_a_restart(
    sandbox: Sandbox, settings: Settings, broker: aio_pika.abc.AbstractRobustConnection
) -> None:
    async with Database.connect(settings) as db:
        _, key = await ApiKeys(db).create("fleet team")
        batch_id = await accepted_then_killed(settings, key)
        batches = Batches(db)
        left = await batches.status(batch_id)
        assert left is not None and left.status == "publishing"
        assert await queued(broker, settings) == 0  # the broker has none of its checks

        async with contextlib.AsyncExitStack() as stack:
            restarted = await asyncio.gather(
                *(stack.enter_async_context(api_process(settings)) for _ in range(2))
            )
            running = await poll_until(lambda: batches.status(batch_id), publishing_closed, timeout=60)
        assert running is not None and running.status == "running" and running.total == len(VINS)
        assert [child.output().encode().count(RESUMED) for child in restarted] in ([1, 0], [0, 1])
        assert await queued(broker, settings) == len(VINS)  # each check published once, by one of them

        async with running_worker(settings) as worker:
            assert worker.recorder is not None
            async with asyncio.timeout(60):
                await worker.recorder.recorded(len(VINS))
        done = await batches.status(batch_id)
        assert done is not None and (done.status, done.processed) == ("completed", len(VINS))
    assert (await sandbox.stats())["get"]["count"] == len(VINS)


async def accepted_then_killed(settings: Settings, key: str) -> str:
    """The id of a batch whose API answered 202 and was SIGKILLed before the broker saw a publish."""
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    try:
        held = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        async with api_process(settings, RECALLS_AMQP_URL=held) as doomed:
            proxy.hang()  # from here the broker hears nothing from this API: its publishes wait in the proxy
            answer = await submit(doomed, key)
            await doomed.kill()
    finally:
        await proxy.close()  # the held bytes go nowhere: the connection they were for is closed
    assert answer.status_code == 202, answer.text
    assert answer.json()["data"]["status"] == "uploading"
    return str(answer.json()["data"]["batchId"])


async def submit(api: ApiProcess, key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.post(f"{API}/submit", params={"key": key}, json={"vins": VINS})


def publishing_closed(status: BatchStatus | None) -> bool:
    return status is not None and status.status != "publishing"


async def queued(broker: aio_pika.abc.AbstractRobustConnection, settings: Settings) -> int:
    """How many checks wait in the bulk lane of gets."""
    async with broker.channel() as channel:
        queue = await channel.declare_queue(
            Topology(settings.prefix).command_queue("get", "bulk"), passive=True
        )
        return int(queue.declaration_result.message_count or 0)
