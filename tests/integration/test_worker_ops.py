"""A worker's operations surface, against the real broker, store and sandbox: what /metrics counts,
what /healthz and /readyz answer, and the live stats the dashboard adds up."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from prometheus_client.parser import text_string_to_metric_families

from recalls.shared.contracts import DeleteCommand, FixCommand
from recalls.shared.metrics import WorkerMetrics
from recalls.shared.settings import Settings
from recalls.shared.telemetry import WorkerStats, declare_stats, decode_stats
from recalls.shared.topology import Topology
from recalls.workers.ops_http import OpsEndpoints, serving
from recalls.workers.runtime import Worker, dvsa_client
from tests.integration.conftest import Events, Sandbox, publish, publish_raw
from tests.support.commands import create
from tests.support.polling import poll_until
from tests.support.ports import free_port

pytestmark = pytest.mark.integration
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(worker: Worker) -> Samples:
    """Every sample of the worker's /metrics, parsed as Prometheus would."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{worker.ops_port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(worker: Worker, holds: Callable[[Samples], bool]) -> Samples:
    return await poll_until(lambda: scrape(worker), holds, every=0.2)


class StatsFeed:
    """Every WorkerStats published under a prefix, added up."""

    def __init__(self) -> None:
        self.received: list[WorkerStats] = []

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.received.append(decode_stats(message.body))

    def calls(self, verb: str) -> Counter[str]:
        return sum((Counter(stats.calls.get(verb, {})) for stats in self.received), Counter())

    def dead_letters(self) -> Counter[str]:
        return sum((Counter(stats.dead_letters) for stats in self.received), Counter())

    def token_refreshes(self) -> int:
        return sum(stats.token_refreshes for stats in self.received)

    async def until(self, holds: Callable[[], bool]) -> None:
        async def now() -> bool:
            return holds()

        await poll_until(now, bool)


@pytest.fixture
async def stats(channel: AbstractChannel, settings: Settings) -> AsyncIterator[StatsFeed]:
    feed = StatsFeed()
    exchange = await declare_stats(channel, Topology(settings.prefix))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange)
    tag = await queue.consume(feed.on_message, no_ack=True)
    yield feed
    await queue.cancel(tag)


@pytest.mark.settings(metrics_port=free_port())
async def test_metrics_and_live_stats_count_what_the_worker_did(
    worker: Worker, channel: AbstractChannel, settings: Settings, events: Events, stats: StatsFeed
) -> None:
    for n in range(3):
        await publish(channel, settings, create(n))
    await events.wait_for(3)  # the fix below must find its recall: one 400, no 404 first
    # A rectification date before the campaign began: DVSA refuses it for good (400).
    early = FixCommand(
        vin=create(0).vin, manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2020, 1, 1)
    )
    await publish(channel, settings, early)
    await publish_raw(channel, settings, b"{not json", "get", message_id="poison-1")
    await events.wait_for(4)

    samples = await scrape_until(worker, lambda s: value(s, "recalls_dead_letter_queue_messages") == 2)
    assert value(samples, "recalls_dvsa_requests_total", verb="create", status="201") == 3
    assert value(samples, "recalls_dvsa_requests_total", verb="fix", status="400") == 1
    assert value(samples, "recalls_commands_total", verb="create", outcome="applied") == 3
    assert value(samples, "recalls_commands_total", verb="fix", outcome="failed") == 1
    assert value(samples, "recalls_dead_letters_total", verb="fix", reason="rejected") == 1
    assert value(samples, "recalls_dead_letters_total", verb="get", reason="invalid_message") == 1
    assert value(samples, "recalls_dvsa_request_duration_seconds_count", verb="create") == 3
    assert value(samples, "recalls_limiter_wait_seconds_count", verb="create", lane="live") == 3
    assert value(samples, "recalls_token_refreshes_total") == 1
    assert value(samples, "recalls_token_expiry_timestamp_seconds") > time.time()
    assert value(samples, "recalls_commands_in_flight") == 0
    assert value(samples, "recalls_asyncio_tasks") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    queue = f"{settings.prefix}.create"
    assert (
        "recalls_queue_messages",
        frozenset({"queue": queue, "verb": "create", "lane": "live"}.items()),
    ) in samples
    assert ("recalls_retry_queue_messages", frozenset({"tier": "0.2s"}.items())) in samples

    await stats.until(lambda: stats.calls("create")["201"] == 3 and stats.dead_letters()["rejected"] == 1)
    assert stats.calls("fix") == Counter({"400": 1})
    assert stats.dead_letters() == Counter({"rejected": 1, "invalid_message": 1})
    assert stats.token_refreshes() == 1
    assert {s.worker for s in stats.received} == {stats.received[0].worker}


@pytest.mark.settings(metrics_port=free_port())
async def test_a_command_that_meets_dvsa_faults_is_counted_as_retried_then_applied(
    worker: Worker, channel: AbstractChannel, settings: Settings, events: Events, sandbox: Sandbox
) -> None:
    await publish(channel, settings, create(7))
    await events.wait_for(1)
    await sandbox.faults(error_rate=1.0)
    await publish(
        channel, settings, DeleteCommand(vin=create(7).vin, manufacturer_campaign_reference="CAMP1")
    )
    await scrape_until(worker, lambda s: value(s, "recalls_retries_total", verb="delete", tier="0.2s") >= 1)
    await sandbox.faults(error_rate=0.0)
    await events.wait_for(2)

    samples = await scrape(worker)
    server_errors = [
        count
        for (name, labels), count in samples.items()
        if name == "recalls_dvsa_requests_total"
        and ("verb", "delete") in labels
        and dict(labels)["status"].startswith("5")
    ]
    assert sum(server_errors) >= 1  # the sandbox's faults answer 500 or 503
    assert value(samples, "recalls_dvsa_requests_total", verb="delete", status="204") == 1
    assert value(samples, "recalls_commands_total", verb="delete", outcome="applied") == 1
    assert value(samples, "recalls_dead_letters_total", verb="delete", reason="retries_exhausted") == 0


@pytest.mark.settings(metrics_port=free_port())
async def test_health_and_readiness_of_a_running_worker(worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{worker.ops_port}") as http:
        live = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok", "store": "ok"}}


@pytest.mark.settings(metrics_port=free_port(), redis_url="redis://:hunter2-secret@127.0.0.1:1/0")
async def test_readiness_names_an_unreachable_redis_without_its_password(settings: Settings) -> None:
    async with dvsa_client(settings) as dvsa:  # the worker waits for Redis at start, serving its probes
        worker = Worker(settings, dvsa)
        running = asyncio.create_task(worker.run())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.metrics_port}") as http:

            async def readiness() -> httpx.Response | None:
                with contextlib.suppress(httpx.ConnectError):  # not listening yet
                    return await http.get("/readyz")
                return None

            def broker_open(response: httpx.Response | None) -> bool:
                return response is not None and response.json()["checks"]["broker"] == "ok"

            ready = await poll_until(readiness, broker_open)
            live = await http.get("/healthz")
        worker.stop()
        await running
    assert ready is not None
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unready"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["redis"].startswith("down: ")
    assert "hunter2" not in ready.text
    assert live.status_code == 200  # alive: restarting it would not bring Redis back


async def test_liveness_fails_once_the_worker_stops_and_readiness_names_each_failure() -> None:
    alive = True

    async def broken() -> None:
        raise ConnectionError("amqp://guest:secret@host")

    async def slow() -> None:
        await asyncio.Event().wait()

    endpoints = OpsEndpoints(WorkerMetrics(), alive=lambda: alive, checks={"broker": broken, "store": slow})
    port = free_port()
    async with (
        serving(endpoints, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        alive = False
        stopping = await http.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {
        "broker": "down: ConnectionError",
        "store": "down: no answer within 2 s",
    }
    assert "secret" not in ready.text
    assert (stopping.status_code, stopping.json()) == (503, {"status": "stopping"})
