"""Real runs log no secret and no live token, and every line names the command or request it is about.

A ``recalls worker`` child in fleet mode meets a sandbox that knows distinctive credentials; it applies a
create, retries through a 500, gives up on a 400, and refreshes its token after a 401 (the sandbox is
restarted on the same port, so the tokens it issued before are unknown).  The tokens it used are read
from the fleet's Redis key and proven live against the sandbox that issued them; then every line it
wrote to stderr is checked.  The batch API runs in this process with the correlation middleware,
its logs set up by ``logs.configure``; requests carry a key in the query and a correlation header.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel
from redis import asyncio as aioredis

from recalls.cli.sandbox_process import pointed_at
from recalls.ops import dashboard
from recalls.producers.batch_api import create_app
from recalls.producers.batch_api.correlation import HEADER, CorrelationMiddleware
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared import logs
from recalls.shared.contracts import CreateCommand, FixCommand
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from recalls.shared.topology import Topology, delete
from tests.integration.conftest import (
    Sandbox,
    base_settings,
    collect_events,
    publish,
    running_sandbox,
    worker_env,
)
from tests.support.batch_api import API, LIGHT, delete_topology, serving
from tests.support.commands import START, vin
from tests.support.services import AMQP_URL, REDIS_URL

pytestmark = pytest.mark.integration

RUN_ID = re.compile(r"run-[0-9a-f]{12}")
Entry = dict[str, Any]


def parsed(line: bytes) -> Entry | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


@dataclass
class Captured:
    """The lines a child writes to stderr, as they come, with a wait for one that matches."""

    lines: list[bytes] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line)
            self.changed.set()
        self.closed = True
        self.changed.set()

    async def wait_for(self, wanted: Callable[[Entry], bool], timeout: float = 30) -> Entry:
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[seen:]:
                    entry = parsed(line)
                    if entry is not None and wanted(entry):
                        return entry
                seen = len(self.lines)
                assert not self.closed, "the worker exited:\n" + b"".join(self.lines).decode()
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def worker_process(settings: Settings) -> AsyncIterator[Captured]:
    """``recalls worker`` in fleet mode, its stderr captured, until SIGTERM at the end of the block."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from recalls.cli.main import main; main()",
        "worker",
        env=worker_env(
            settings,
            RECALLS_REDIS_URL=REDIS_URL,
        ),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    captured = Captured()
    pumping = asyncio.create_task(captured.pump(process.stderr))
    try:
        await captured.wait_for(lambda entry: entry.get("msg") == "worker consuming")
        yield captured
    finally:
        process.send_signal(signal.SIGTERM)
        code = await process.wait()
        await pumping
    assert code == 0, b"".join(captured.lines).decode()


async def live_token(redis: aioredis.Redis, settings: Settings) -> str:
    """The fleet's current token, as the worker stored it in Redis."""
    raw = await redis.get(f"{settings.prefix}:token")
    assert raw is not None, "the worker kept no token in Redis"
    return str(json.loads(raw)["value"])


async def dvsa_get(sandbox: Sandbox, settings: Settings, token: str, number: int) -> int:
    """The status the sandbox answers a GET carrying ``token``: 200 if it issued it and it is valid."""
    headers = {"Authorization": f"Bearer {token}", "x-api-key": settings.dvsa_api_key.get_secret_value()}
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        return (await client.get(f"/recalls/vin/{vin(number)}", headers=headers)).status_code


def create(number: int, correlation_id: str | None) -> CreateCommand:
    return CreateCommand(
        vin=vin(number),
        manufacturer_campaign_reference="CAMP1",
        recall_campaign_start_date=START,
        correlation_id=correlation_id,
    )


def about(message_id: str, *, result: str) -> Callable[[Entry], bool]:
    return lambda entry: entry.get("message_id") == message_id and entry.get("result") == result


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def amqp(prefix: str) -> AsyncIterator[AbstractChannel]:
    """A channel to publish on; the prefix's topology is deleted afterwards."""
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        channel = await connection.channel()
        await delete(channel, Topology(prefix, base_settings(prefix).retry_tiers))
        await connection.close()


async def test_worker_logs_hold_no_secret_or_live_token_and_name_each_command(
    prefix: str, store_path: Path, redis: aioredis.Redis, amqp: AbstractChannel
) -> None:
    mark = uuid.uuid4().hex
    secret, api_key = f"log-secret-{mark}", f"log-api-key-{mark}"
    settings = base_settings(prefix, sqlite_path=store_path, dvsa_client_secret=secret, dvsa_api_key=api_key)
    applied = create(1, f"corr-applied-{mark}")
    # Its correlation id comes as the AMQP property, as a request/reply caller sends it.
    faulted = create(2, None)
    faulted_id = f"corr-faulted-{mark}"
    refused = FixCommand(  # a rectification before the campaign started: DVSA answers 400
        vin=vin(1), manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2020, 1, 1)
    )
    after_restart = create(3, f"corr-refreshed-{mark}")
    async with contextlib.AsyncExitStack() as running:  # the worker outlives the first sandbox
        async with running_sandbox(settings) as first:
            settings = pointed_at(settings, first.url)
            events = await collect_events(amqp, settings)
            worker = await running.enter_async_context(worker_process(settings))

            await publish(amqp, settings, applied)
            await events.wait_for(1)
            first_token = await live_token(redis, settings)
            assert await dvsa_get(first, settings, first_token, 1) == 200

            await first.faults(error_rate=1.0)  # every call answered 500 or 503
            await publish(amqp, settings, faulted, correlation_id=faulted_id)
            retried = await worker.wait_for(about(faulted.message_id, result="retry"))
            assert retried["status"] in (500, 503)
            await first.faults(error_rate=0.0)
            await events.wait_for(2)

            await publish(amqp, settings, refused)
            await events.wait_for(3)
        # The same address, but a sandbox that never issued the worker's token: its next call meets 401.
        async with running_sandbox(settings, "--port", str(settings.sandbox_port)) as second:
            await publish(amqp, settings, after_restart)
            await events.wait_for(4)
            second_token = await live_token(redis, settings)
            assert second_token != first_token
            assert await dvsa_get(second, settings, second_token, 3) == 200
            assert await dvsa_get(second, settings, first_token, 3) == 401
            creates = [entry["status"] for entry in await second.requests() if entry["verb"] == "create"]
            assert creates == [401, 201]
            await running.aclose()  # the worker stops while DVSA is still there
    outcomes = events.by_id()
    assert [outcomes[c.message_id].result for c in (applied, faulted, refused, after_restart)] == [
        "applied",
        "applied",
        "failed",
        "applied",
    ]
    assert outcomes[refused.message_id].dvsa_status == 400
    text = b"".join(worker.lines).decode()
    for leaked in (secret, api_key, first_token, second_token):
        assert leaked not in text
    expected = {c.message_id: c.correlation_id or c.message_id for c in (applied, refused, after_restart)}
    assert_every_line_is_correlated(worker.lines, {**expected, faulted.message_id: faulted_id})


def assert_every_line_is_correlated(lines: list[bytes], expected: dict[str, str]) -> None:
    """Every line is JSON with a correlation id: ``expected[message_id]`` about a command, else the run id."""
    entries = [parsed(line) for line in lines]
    assert None not in entries, [line for line, entry in zip(lines, entries, strict=True) if entry is None]
    run_ids: set[str] = set()
    seen: set[str] = set()
    for entry in entries:
        assert entry is not None
        correlation = entry.get("correlation_id")
        assert isinstance(correlation, str) and correlation, entry
        message_id = entry.get("message_id")
        if message_id is None:
            run_ids.add(correlation)
            continue
        assert correlation == expected[message_id], entry
        seen.add(message_id)
    assert seen == set(expected)
    [run_id] = run_ids
    assert RUN_ID.fullmatch(run_id)


@pytest.fixture
def captured_logs(prefix: str) -> Iterator[io.StringIO]:
    """The product's log set-up (``logs.configure``), its lines written to a buffer; undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in logs.NOISY}
    logs.configure(base_settings(prefix), json_lines=True)
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in quieted.items():
            logging.getLogger(name).setLevel(was)


@contextlib.asynccontextmanager
async def api_with_correlation(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The batch API as test_batch_api serves it, under the correlation middleware, and a key it accepts."""
    async with Database.connect(settings) as db, Publisher.connect(publisher_config(settings)) as publisher:
        _, key = await ApiKeys(db).create("log test")
        app = create_app(settings, db, publisher, surfaces=[dashboard.surface])
        if not any(getattr(added, "cls", None) is CorrelationMiddleware for added in app.user_middleware):
            app.add_middleware(CorrelationMiddleware)
        async with serving(app) as http:
            yield http, key


async def test_api_logs_hold_no_key_and_carry_each_requests_correlation_id(
    prefix: str, store_path: Path, captured_logs: io.StringIO
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    mark = uuid.uuid4().hex
    wrong_key = f"rk_00000000_{mark}"
    try:
        async with api_with_correlation(settings) as (http, key):
            status, submit = f"{API}/status", f"{API}/submit"
            ids = [{HEADER: f"api-{n}-{mark}"} for n in range(3)]
            sent = [
                await http.get(status, params={"key": key, "batchId": "b"}, headers=ids[0]),
                await http.post(
                    f"{API}/submit", params={"key": key}, json={"vins": [vin(1)]}, headers=ids[1]
                ),
                await http.get(status, params={"key": wrong_key, "batchId": "b"}, headers=ids[2]),
                await http.get(status, params={"key": key, "batchId": "b"}, headers={HEADER: "x" * 129}),
                await http.get(status, params={"batchId": "b"}, headers={"x-api-key": key}),
            ]
    finally:
        await delete_topology(settings)
    assert [response.status_code for response in sent] == [404, 202, 401, 404, 404]
    echoed = [response.headers[HEADER] for response in sent]
    assert echoed[:3] == [sent_id[HEADER] for sent_id in ids]
    assert all(re.fullmatch(r"[0-9a-f]{32}", made) for made in echoed[3:])  # not sane, or none sent
    text = captured_logs.getvalue()
    assert key not in text and wrong_key not in text
    entries = [parsed(line.encode()) for line in text.splitlines()]
    assert entries and None not in entries, text
    assert all(
        entry and isinstance(entry["correlation_id"], str) and entry["correlation_id"] for entry in entries
    )
    requests = [
        (entry["msg"], entry["correlation_id"])
        for entry in entries
        if entry is not None and str(entry["msg"]).startswith(("GET /v1", "POST /v1"))
    ]
    assert requests == [
        (f"GET {status} 404", echoed[0]),
        (f"POST {submit} 202", echoed[1]),
        (f"GET {status} 401", echoed[2]),
        (f"GET {status} 404", echoed[3]),
        (f"GET {status} 404", echoed[4]),
    ]
