"""The API's operations surface over real HTTP: /metrics by route template, /healthz, /readyz.

Metrics count requests by method, route template and status (never a raw path or a query, which may
hold a key), time them, and count batches and VINs submitted, in a registry of the app's own.
Readiness answers 200 through ``serve`` (the broker connection it opens and the store) and 503 naming
each failing check, without a URL or password, when the broker connection is closed and the store is
unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aio_pika
import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers.batch_api import create_app, serve
from producers.publisher import Publisher
from shared.store.database import Database
from shared.topology import Topology
from tests.integration.conftest import base_settings
from tests.support.batch_api import API, LIGHT, UvicornStarted, delete_topology, running_ops_api, serving
from tests.support.commands import vin

pytestmark = pytest.mark.integration


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


async def test_metrics_count_requests_by_route_template_and_the_batches_submitted(
    prefix: str, store_path: Path
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    try:
        async with running_ops_api(settings) as api:
            accepted = await api.submit({"vins": [vin(1), vin(2), vin(2)]})  # two distinct VINs
            assert accepted.status_code == 202, accepted.text
            batch_id = accepted.json()["data"]["batchId"]
            assert (await api.get("status", batch_id)).status_code == 200
            assert (await api.get("status", "no-such-batch")).status_code == 404
            assert (await api.http.get(f"/made-up/{batch_id}", params={"key": api.key})).status_code == 404
            response = await api.http.get("/metrics")
    finally:
        await delete_topology(settings)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for secret_or_raw in (api.key, batch_id, "no-such-batch", "made-up"):
        assert secret_or_raw not in text
    found = samples(text)
    requests = "recalls_api_requests_total"
    status_route = f"{API}/status"
    assert found[requests, labels(method="POST", route=f"{API}/submit", status="202")] == 1
    assert found[requests, labels(method="GET", route=status_route, status="200")] == 1
    assert found[requests, labels(method="GET", route=status_route, status="404")] == 1
    assert found[requests, labels(method="GET", route="unmatched", status="404")] == 1
    duration = "recalls_api_request_duration_seconds_count"
    assert found[duration, labels(route=status_route)] == 2
    assert found["recalls_batches_submitted_total", labels()] == 1
    assert found["recalls_batch_vins_submitted_total", labels()] == 2
    # The app's own registry: nothing of it in the process-wide default one.
    assert prometheus_client.REGISTRY.get_sample_value("recalls_batches_submitted_total") is None


async def test_serve_is_live_and_ready_with_its_broker_connection_and_store(
    prefix: str, store_path: Path
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    started = UvicornStarted()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(started)
    logger.setLevel(logging.INFO)
    serving_task = asyncio.create_task(serve(settings, "127.0.0.1", 0))
    try:
        async with asyncio.timeout(30):
            await started.event.wait()
        async with httpx.AsyncClient(base_url=started.url) as http:
            live = await http.get("/healthz", headers={"x-correlation-id": "probe-1"})
            ready = await http.get("/readyz")
            dashboard = await http.get("/dashboard")
    finally:
        serving_task.cancel()
        await asyncio.gather(serving_task, return_exceptions=True)
        logger.removeHandler(started)
        await delete_topology(settings)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert live.headers["x-correlation-id"] == "probe-1"
    assert len(ready.headers["x-correlation-id"]) == 32  # none sent: a new one, echoed
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok", "store": "ok"}}
    assert dashboard.status_code == 401  # the page, like the batch API, needs a key


async def test_readyz_names_each_failing_check_without_a_url(prefix: str, store_path: Path) -> None:
    password = "pg-secret-7f3a"  # made up; must never be echoed
    unreachable_store = f"postgresql://recalls:{password}@127.0.0.1:1/recalls"
    settings = base_settings(prefix, sqlite_path=store_path, database_url=unreachable_store, **LIGHT)
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    db = await Database.open(settings)  # opens no connection until used
    try:
        async with Publisher.on_connection(
            connection, Topology(settings.prefix, settings.retry_tiers)
        ) as publisher:
            app = create_app(settings, db, publisher, connection=connection)
            async with serving(app) as http:
                await connection.close()
                ready = await http.get("/readyz")
                live = await http.get("/healthz")
    finally:
        await db.close()
        await delete_topology(settings)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unready"
    assert set(body["checks"]) == {"broker", "store"}
    assert body["checks"]["broker"].startswith("down: ")
    assert body["checks"]["store"].startswith("down: ")
    for leak in (password, "postgresql://", "127.0.0.1"):
        assert leak not in ready.text
    assert live.status_code == 200  # alive all the same: liveness is the process, not its services
