"""A batch check of N VINs through the batch API, one worker and the strict 25 GET/s sandbox.

1. starts a DVSA sandbox, seeds a recall on every third VIN, starts one worker and ``recalls api``;
2. submits N VINs (default 10,000) with a fresh key, polls the status every 0.5 s until ``completed``;
3. submits the same VINs again: served from the cache of checks, the submit answers ``completed``.

Figures: the wall time from submit to completed against the physical N / 25 s (goal: at most 1.03 times
it), 429s and the busiest second of GETs at the sandbox, and the re-submit's time to completed (goal
under 2 s).  Writes ``bench/results/batch_check-<N>.json``.  Asserts nothing.

    .venv/bin/python -m bench.batch_check [--vins 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.fleet_throughput import ROOT, Options, running_workers, sandbox_and_broker, seed
from bench.ports import free_port
from recalls.shared.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results"
ONE_WORKER = Options(processes=1, per_verb=0, redis=None, samples=0, gap=0.0, lane="bulk")
GOAL_RATIO = 1.03
Json = dict[str, Any]


def vins(tag: str, count: int) -> list[str]:
    return [f"{tag[:6].upper()}{n:011d}" for n in range(count)]


async def recalls(*args: str, env: dict[str, str]) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from recalls.cli.main import main; main()", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"recalls {' '.join(args)} exited {child.returncode}")
    return out.decode().strip()


async def api_process(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from recalls.cli.main import main; main()", "api", "--port", str(port),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with httpx.AsyncClient() as probe, asyncio.timeout(60):
        while True:
            try:
                (await probe.get(f"http://127.0.0.1:{port}/openapi.json")).raise_for_status()
                return process
            except httpx.TransportError:
                await asyncio.sleep(0.2)  # nothing to await until it listens


async def until_done(api: httpx.AsyncClient, key: str, batch_id: str) -> Json:
    while True:
        reply = await api.get("/v1/recalls-batch/status", params={"key": key, "batchId": batch_id})
        data: Json = reply.raise_for_status().json()["data"]
        if data["status"] not in {"uploading", "processing"}:
            return data
        await asyncio.sleep(0.5)  # polling is how a batch API client waits


async def submit(api: httpx.AsyncClient, key: str, batch: list[str]) -> tuple[Json, float]:
    started = time.perf_counter()
    reply = await api.post("/v1/recalls-batch/submit", params={"key": key}, json={"vins": batch})
    data: Json = reply.raise_for_status().json()["data"]
    if data["status"] in {"uploading", "processing"}:
        data = await until_done(api, key, data["batchId"])
    return data, time.perf_counter() - started


async def main(count: int) -> Json:
    tag = uuid.uuid4().hex[:6]
    batch = vins(tag, count)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["RECALLS_SQLITE_PATH"] = str(Path(scratch) / "store.db")
        async with sandbox_and_broker(load_settings(prefix=f"bench-{tag}")) as (settings, admin, _):
            await seed(admin, batch[::3])
            async with running_workers(settings, ONE_WORKER):
                return await measure(settings, admin, batch)


async def measure(settings: Settings, admin: httpx.AsyncClient, batch: list[str]) -> Json:
    env = {
        **os.environ,
        "RECALLS_PREFIX": settings.prefix,
        "RECALLS_SANDBOX_PORT": str(settings.sandbox_port),
    }
    key = (await recalls("api", "keys", "create", "bench", env=env)).splitlines()[-1]
    port = free_port()
    server = await api_process(env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as api:
            first, first_s = await submit(api, key, batch)
            again, again_s = await submit(api, key, batch)
    finally:
        server.terminate()
        await server.wait()
    stats = (await admin.get("/__admin/stats")).raise_for_status().json()["get"]
    physical = len(batch) / settings.rate_limit
    return {
        "vins": len(batch),
        "wall_s": round(first_s, 1),
        "physical_limit_s": physical,
        "ratio_to_limit": round(first_s / physical, 4),
        "status": first["status"],
        "processed": first["processedVins"],
        "hits": first["hitCount"],
        "throttled_429": stats["throttled"],
        "max_in_window": stats["max_in_window"],
        "resubmit_s": round(again_s, 3),
        "resubmit_status": again["status"],
    }


def show(report: Json) -> None:
    print(f"batch_check: {report['vins']:,} VINs, one worker, strict 25 GET/s sandbox")
    print(
        f"  submit to {report['status']}: {report['wall_s']} s; physical limit "
        f"{report['physical_limit_s']:.0f} s; ratio {report['ratio_to_limit']} (goal <= {GOAL_RATIO})"
    )
    print(
        f"  processed {report['processed']:,}, hits {report['hits']:,}; 429s {report['throttled_429']}; "
        f"most GETs in any 1 s {report['max_in_window']}"
    )
    print(f"  re-submit (cache): {report['resubmit_status']} in {report['resubmit_s']} s (goal < 2 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--vins", type=int, default=10_000)
    report = asyncio.run(main(parser.parse_args().vins))
    show(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"batch_check-{report['vins']}.json").write_text(json.dumps(report, indent=2) + "\n")
