"""Fleet mode: one rate budget, one token and one 429 pause for any number of worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import sys
from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from bench.faults.tcp_proxy import TcpProxy
from recalls.cli.sandbox_process import pointed_at
from recalls.shared.contracts import Command, FixCommand, GetCommand
from recalls.shared.settings import Settings
from tests.integration.conftest import (
    Events,
    Sandbox,
    base_settings,
    collect_events,
    publish,
    running_sandbox,
    running_worker,
    worker_env,
)
from tests.support.commands import create, vin
from tests.support.services import REDIS_URL


@contextlib.asynccontextmanager
async def worker_fleet(settings: Settings, processes: int) -> AsyncIterator[None]:
    """``recalls worker --processes N`` in fleet mode, ready when every child consumes."""
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from recalls.cli.main import main; main()",
        "worker",
        "--processes",
        str(processes),
        env=worker_env(
            settings, RECALLS_REDIS_URL=REDIS_URL, RECALLS_RETRY_TIERS="[0.2, 0.5, 1, 2, 2, 2, 2, 2]"
        ),
        stderr=asyncio.subprocess.PIPE,
    )
    assert supervisor.stderr is not None
    stream = supervisor.stderr
    ready = 0
    async with asyncio.timeout(60):
        while ready < processes:
            line = await stream.readline()
            assert line, "the worker fleet exited before it was ready"
            ready += b"worker consuming" in line
    drain = asyncio.create_task(stream.read())  # keep the pipe flowing
    try:
        yield
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert await supervisor.wait() == 0
        await drain


def backlog(per_verb: int, base: int) -> list[Command]:
    fixes = [
        FixCommand(
            vin=vin(base + n), manufacturer_campaign_reference="SEED", rectification_date=dt.date(2024, 9, 1)
        )
        for n in range(per_verb)
    ]
    creates = [create(base + per_verb + n) for n in range(per_verb)]
    gets = [GetCommand(vin=vin(base + n)) for n in range(per_verb)]
    return [*creates, *fixes, *gets]


async def seed(sandbox: Sandbox, per_verb: int, base: int) -> None:
    recalls = [
        {
            "vin": vin(base + n),
            "manufacturerCampaignReference": "SEED",
            "recallCampaignStartDate": "2024-01-01",
        }
        for n in range(per_verb)
    ]
    response = await sandbox.admin.post("/__admin/recalls", json=recalls)
    response.raise_for_status()


def assert_within_limit(stats: dict[str, dict[str, int]], limit: int = 25) -> None:
    for verb in ("create", "fix", "get"):
        assert stats[verb]["throttled"] == 0, (verb, stats[verb])
        assert stats[verb]["max_in_window"] <= limit, (verb, stats[verb])


@pytest.mark.parametrize("processes", [1, 3, 6])
async def test_any_number_of_processes_keeps_the_limit(
    processes: int, sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    per_verb = 100  # four seconds of work per verb at 25/s
    await seed(sandbox, per_verb, 10_000)
    commands = backlog(per_verb, 10_000)
    async with worker_fleet(settings, processes):
        # Published once every process is up, so the backlog meets a settled fleet, not one still
        # importing its code on a 2-core machine beside the sandbox.
        for command in commands:
            await publish(channel, settings, command)
        await events.wait_for(len(commands), timeout=90)
    assert {e.result for e in events.received} == {"applied"}
    stats = await sandbox.stats()
    assert_within_limit(stats)
    assert stats["create"]["count"] == per_verb


async def test_one_token_for_the_fleet_per_lifetime(prefix: str, broker: AbstractRobustConnection) -> None:
    processes, ttl = 3, 4
    sandbox_settings = base_settings(prefix)
    async with running_sandbox(sandbox_settings, "--token-ttl", str(ttl)) as sandbox:
        settings = pointed_at(sandbox_settings, sandbox.url)
        channel = await broker.channel(publisher_confirms=True)
        collected = await collect_events(channel, settings)
        commands = [create(20_000 + n) for n in range(250)]  # ten seconds: past two expiries
        for command in commands:
            await publish(channel, settings, command)
        loop = asyncio.get_running_loop()
        async with worker_fleet(settings, processes):
            started = loop.time()
            await collected.wait_for(len(commands), timeout=60)
            elapsed = loop.time() - started
        stats = await sandbox.stats()
        journal = await sandbox.requests()
    assert {e.result for e in collected.received} == {"applied"}
    # One token per ~0.9 lifetime for the whole fleet, not one per process.
    assert 2 <= stats["tokens_issued"] <= elapsed / (ttl * 0.9) + 2
    assert stats["token_requests"] == stats["tokens_issued"]
    assert not [r for r in journal if r["status"] == 401]


async def test_a_429_storm_pauses_the_verb_for_every_process(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    commands = [create(30_000 + n) for n in range(60)]
    for command in commands:
        await publish(channel, settings, command)
    async with worker_fleet(settings, 3):
        await sandbox.faults(storm_seconds=2)
        await events.wait_for(len(commands), timeout=60)
    stats = await sandbox.stats()
    assert {e.result for e in events.received} == {"applied"}
    # Three processes that each kept hammering would earn dozens of 429s in two seconds; a shared
    # pause earns a few: the first one, and one per Retry-After while the storm lasts.
    assert 0 < stats["create"]["throttled"] <= 8, stats["create"]


async def test_redis_lost_and_back_mid_run(sandbox: Sandbox, prefix: str, channel: AbstractChannel) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    settings = pointed_at(
        base_settings(
            prefix, redis_url=f"redis://127.0.0.1:{proxy.port}/0", retry_tiers=(0.2, 0.5, 1, 2, 2, 2, 2)
        ),
        sandbox.url,
    )
    collected = await collect_events(channel, settings)
    commands = [create(40_000 + n) for n in range(150)]
    for command in commands:
        await publish(channel, settings, command)
    async with running_worker(settings), running_worker(settings):
        await collected.wait_for(25)
        await proxy.cut()
        await asyncio.sleep(0.5)  # calls already past the limiter finish
        calls_at_cut = len(await sandbox.requests())
        await asyncio.sleep(2)  # the outage lasts two more seconds
        calls_during_outage = len(await sandbox.requests()) - calls_at_cut
        await proxy.restore()
        await collected.wait_for(len(commands), timeout=60)
    await proxy.close()
    assert calls_during_outage == 0  # workers stopped calling DVSA rather than guessing
    stats = await sandbox.stats()
    assert {e.result for e in collected.received} == {"applied"}
    assert stats["create"]["throttled"] == 0
    assert stats["create"]["max_in_window"] <= 25
    assert len(await sandbox.recalls()) == len(commands)
