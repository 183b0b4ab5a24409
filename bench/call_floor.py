"""The CPU a worker cannot avoid per DVSA call: the HTTP client's exchange and the broker's round.

A worker's call is at least one HTTP exchange with DVSA and one AMQP round (the command consumed, its
outcome published with a confirm, the command acknowledged).  This bench times only those, in this
process's CPU seconds, back to back with no store, log or limiter:

- a JSON POST through httpx's ``AsyncClient``, through the fleet's own transport (httpcore's pool,
  :mod:`recalls.shared.dvsa.transport`) and through aiohttp's ``ClientSession``, each to a minimal
  aiohttp server in a child process (its CPU is not counted);
- a message consumed from RabbitMQ, one published with a confirm in answer, and the first acknowledged.

It prints each figure and their sum beside the sandbox's CPU per request from the last fleet run
(``bench/results/fleet_throughput-1p.json``), against issue 17's goal of at most 2.5 times that.

    .venv/bin/python -m bench.call_floor [--calls 2000] [--amqp amqp://guest:guest@127.0.0.1:5672/]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import aiohttp
import httpx
from aiohttp import web

from recalls.shared.dvsa.transport import pooled_transport

PORT = 18_765  # loopback only
BODY = {"vin": "SAJAA01A00A000001", "recallNumber": "R/2026/001", "manufacturerRecallNumber": "M1"}
FLEET_RESULT = Path(__file__).parent / "results" / "fleet_throughput-1p.json"
GOAL_RATIO = 2.5
WARM_UP = 50


def serve() -> None:
    """The child process: answers every POST with a small JSON body, as DVSA does."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "created"}, status=201)

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/recalls", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", PORT).start()
        await asyncio.Event().wait()

    asyncio.run(run())


async def per_call_ms(call: Callable[[], Awaitable[object]], calls: int) -> float:
    for _ in range(WARM_UP):
        await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) * 1000 / calls


async def http_clients(calls: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{PORT}/recalls"
    figures = {}
    async with httpx.AsyncClient() as client:
        figures["httpx AsyncClient"] = await per_call_ms(lambda: client.post(url, json=BODY), calls)
    async with pooled_transport(url, 10) as transport:
        figures["fleet transport (httpcore)"] = await per_call_ms(
            lambda: transport.request("POST", url, params=None, json=BODY, headers={}), calls
        )
    async with aiohttp.ClientSession() as session:

        async def post() -> object:
            async with session.post(url, json=BODY) as response:
                return await response.read()

        figures["aiohttp ClientSession"] = await per_call_ms(post, calls)
    return figures


async def broker_round(calls: int, amqp_url: str) -> float:
    """CPU per command: consumed, an outcome published with a confirm, the command acknowledged."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=50)
        name = f"bench-floor-{uuid.uuid4().hex[:8]}"
        commands = await channel.declare_queue(f"{name}-commands", auto_delete=True)
        outcomes = await channel.declare_queue(f"{name}-outcomes", auto_delete=True)
        body = json.dumps(BODY).encode()
        total = calls + WARM_UP
        for _ in range(total):
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=commands.name)
        done, seen, started = asyncio.Event(), 0, 0.0

        async def on_command(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen, started
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=f"{name}-outcomes")
            await message.ack()
            seen += 1
            if seen == WARM_UP:
                started = time.process_time()
            if seen == total:
                done.set()

        await commands.consume(on_command)
        await done.wait()
        spent = (time.process_time() - started) * 1000 / calls
        await outcomes.delete(if_unused=False, if_empty=False)  # never consumed: it would not go by itself
        return spent


def sandbox_ms_per_request() -> float | None:
    try:
        return float(json.loads(FLEET_RESULT.read_text())["cpu"]["sandbox_ms_per_request"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


async def main(calls: int, amqp_url: str) -> None:
    server = multiprocessing.get_context("spawn").Process(target=serve, daemon=True)
    server.start()
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", PORT)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        http = await http_clients(calls)
    finally:
        server.terminate()
    amqp = await broker_round(calls, amqp_url)
    print(f"client CPU per call, {calls} calls back to back (no store, log or limiter)")
    for name, ms in http.items():
        print(f"  {name:<28} {ms:.3f} ms")
    print(f"  {'aio-pika consume+publish+ack':<28} {amqp:.3f} ms")
    floor = http["fleet transport (httpcore)"] + amqp
    print(f"  floor with the fleet's transport: {floor:.3f} ms")
    sandbox = sandbox_ms_per_request()
    if sandbox is not None:
        print(
            f"  the sandbox's CPU per request ({FLEET_RESULT.name}): {sandbox:.3f} ms; the floor is "
            f"{floor / sandbox:.2f}x it (goal for the whole worker <= {GOAL_RATIO}x)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.calls, arguments.amqp))
