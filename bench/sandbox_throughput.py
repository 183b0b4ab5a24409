"""How many requests per second the DVSA sandbox answers, so we know it is never the bottleneck.

Starts ``recalls simulator`` in a subprocess with a rate limit too high to matter, then drives it from
client processes (each an asyncio loop with a pool of keep-alive connections) for a fixed time: every
client task creates a recall for a new VIN and reads it back.  Prints the requests per second, the share
that were not 2xx, and the sandbox's own CPU use, from which "requests per CPU-second" says what one core
of sandbox can do regardless of how fast the clients were.

    .venv/bin/python bench/sandbox_throughput.py [--seconds 10] [--clients 1] [--concurrency 64]
        [--library aiohttp|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import httpx

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"  # noqa: S105 - a throwaway credential of a local sandbox
SCOPE = "api://bench/.default"
API_KEY = "bench-api-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ClientResult:
    requests: int
    errors: int
    started: float  # time.monotonic(), which is one clock for every process on the machine
    finished: float


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    """The sandbox subprocess and its URL (read from the line it prints once listening)."""
    command = [
        sys.executable,
        "-c",
        "from recalls.cli.simulator import simulator; simulator()",
        "--host=127.0.0.1",
        "--port=0",
        "--rate-limit=100000000",
        f"--client-id={CLIENT_ID}",
        f"--client-secret={CLIENT_SECRET}",
        f"--scope={SCOPE}",
        f"--api-key={API_KEY}",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert process.stdout is not None
    line = process.stdout.readline()  # the sandbox prints its URL once and flushes
    if not line.startswith("DVSA sandbox listening on "):
        process.kill()
        raise SystemExit(f"the sandbox did not start (said {line!r})")
    return process, line.rsplit(" ", 1)[1].strip()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (0 where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime and stime, after the command name
    return ticks / os.sysconf("SC_CLK_TCK")


async def fetch_token(url: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": SCOPE,
            },
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


Call = Callable[[str, str, object], Awaitable[int]]


async def create_then_get(call: Call, client_index: int, concurrency: int, seconds: float) -> ClientResult:
    """``concurrency`` tasks each creating a recall for a new VIN and reading it back, for ``seconds``."""
    counts = [0, 0]  # requests, errors
    started = time.monotonic()
    deadline = started + seconds

    async def counted(method: str, path: str, body: object = None) -> None:
        status = await call(method, path, body)
        counts[0] += 1
        counts[1] += status >= 300

    async def loop(task_index: int) -> None:
        serial = 0
        while time.monotonic() < deadline:
            serial += 1
            vin = f"{client_index:02d}{task_index:04d}{serial:011d}"
            recall = {
                "vin": vin,
                "manufacturerCampaignReference": "BENCH-1",
                "recallCampaignStartDate": "2024-01-01",
            }
            await counted("POST", "/recalls", recall)
            await counted("GET", f"/recalls/vin/{vin}")

    await asyncio.gather(*(loop(index) for index in range(concurrency)))
    return ClientResult(counts[0], counts[1], started, time.monotonic())


async def drive_with_aiohttp(
    url: str, headers: dict[str, str], client_index: int, concurrency: int, seconds: float
) -> ClientResult:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:

        async def call(method: str, path: str, body: object) -> int:
            async with session.request(method, path, json=body) as response:
                await response.read()
                return response.status

        return await create_then_get(call, client_index, concurrency, seconds)


async def drive_with_httpx(
    url: str, headers: dict[str, str], client_index: int, concurrency: int, seconds: float
) -> ClientResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def call(method: str, path: str, body: object) -> int:
            return (await client.request(method, path, json=body)).status_code

        return await create_then_get(call, client_index, concurrency, seconds)


async def drive(library: str, url: str, client_index: int, concurrency: int, seconds: float) -> ClientResult:
    headers = {"Authorization": f"Bearer {await fetch_token(url)}", "x-api-key": API_KEY}
    driver = drive_with_aiohttp if library == "aiohttp" else drive_with_httpx
    return await driver(url, headers, client_index, concurrency, seconds)


@dataclass(frozen=True, slots=True)
class ClientPlan:
    """What one client process does."""

    library: str
    url: str
    index: int
    concurrency: int
    seconds: float


def client_process(plan: ClientPlan, results: Connection) -> None:
    result = asyncio.run(drive(plan.library, plan.url, plan.index, plan.concurrency, plan.seconds))
    results.send(result)


def run(library: str, seconds: float, clients: int, concurrency: int) -> None:
    process, url = start_sandbox()
    try:
        context = multiprocessing.get_context("spawn")
        pipes = [context.Pipe(duplex=False) for _ in range(clients)]
        cpu_before = cpu_seconds(process.pid)
        workers = [
            context.Process(
                target=client_process,
                args=(ClientPlan(library, url, index, concurrency, seconds), sender),
            )
            for index, (_, sender) in enumerate(pipes)
        ]
        for worker in workers:
            worker.start()
        results: list[ClientResult] = [receiver.recv() for receiver, _ in pipes]
        cpu = cpu_seconds(process.pid) - cpu_before
        for worker in workers:
            worker.join()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    # From the first client's first request to the last client's last answer.
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    requests = sum(result.requests for result in results)
    errors = sum(result.errors for result in results)
    print(f"clients: {clients} process(es) x {concurrency} connections ({library}), {elapsed:.1f} s")
    print(f"requests: {requests}  ({requests / elapsed:,.0f} requests/s)")
    print(f"errors: {errors}  ({errors / max(requests, 1):.2%} of requests)")
    if cpu:
        print(
            f"sandbox CPU: {cpu:.1f} s ({cpu / elapsed:.0%} of one core); "
            f"{requests / cpu:,.0f} requests per sandbox CPU-second"
        )
    print(f"sandbox exit code: {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive it")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="connections per client")
    parser.add_argument(
        "--library",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="client HTTP library (httpx is the fleet's, but spends more CPU per request)",
    )
    args = parser.parse_args()
    run(args.library, args.seconds, args.clients, args.concurrency)


if __name__ == "__main__":
    main()
