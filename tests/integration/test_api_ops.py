"""The API's operations surface over real HTTP: /metrics by route template, /healthz, /readyz.

Metrics are served by ``serve`` on ``RECALLS_API_METRICS_PORT``, never on the API's port.  They count
requests by method, route template and status (never a raw path or a query, which may hold a key),
time them, and count batches and VINs submitted, in a registry of the app's own.
Readiness answers 200 through ``serve`` (the broker connection it opens and the store) and 503 naming
each failing check, without a URL or password, when the broker connection is closed and the store is
unreachable.
"""

from __future__ import annotations

from pathlib import Path

import aio_pika
import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recalls.ops import dashboard
from recalls.producers.batch_api import create_app
from recalls.producers.publisher import Publisher
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from recalls.shared.topology import Topology
from tests.integration.conftest import base_settings
from tests.support.api_server import served
from tests.support.batch_api import API, LIGHT, delete_topology, serving
from tests.support.commands import vin
from tests.support.ports import free_port

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


async def test_metrics_leave_the_api_port_for_their_own_and_count_by_route_template(
    prefix: str, store_path: Path
) -> None:
    metrics_port = free_port()
    settings = base_settings(prefix, sqlite_path=store_path, api_metrics_port=metrics_port, **LIGHT)
    async with Database.connect(settings) as db:
        _, key = await ApiKeys(db).create("fleet team")
    try:
        async with served(settings, servers=2) as urls:
            [api_url] = [url for url in urls if not url.endswith(f":{metrics_port}")]
            async with httpx.AsyncClient(base_url=api_url, headers={"x-api-key": key}) as http:
                accepted = await http.post(f"{API}/submit", json={"vins": [vin(1), vin(2), vin(2)]})
                assert accepted.status_code == 202, accepted.text  # two distinct VINs
                batch_id = accepted.json()["data"]["batchId"]
                for asked, status in ((batch_id, 200), ("no-such-batch", 404)):
                    answer = await http.get(f"{API}/status", params={"batchId": asked})
                    assert answer.status_code == status, answer.text
                assert (await http.get(f"/made-up/{batch_id}")).status_code == 404
                on_the_api_port = await http.get("/metrics")
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        await delete_topology(settings)

    assert on_the_api_port.status_code == 404, on_the_api_port.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for secret_or_raw in (key, batch_id, "no-such-batch", "made-up"):
        assert secret_or_raw not in text
    found = samples(text)
    requests = "recalls_api_requests_total"
    status_route = f"{API}/status"
    assert found[requests, labels(method="POST", route=f"{API}/submit", status="202")] == 1
    assert found[requests, labels(method="GET", route=status_route, status="200")] == 1
    assert found[requests, labels(method="GET", route=status_route, status="404")] == 1
    assert found[requests, labels(method="GET", route="unmatched", status="404")] == 2  # and /metrics
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
    try:
        async with served(settings) as [url], httpx.AsyncClient(base_url=url) as http:
            live = await http.get("/healthz", headers={"x-correlation-id": "probe-1"})
            ready = await http.get("/readyz")
            dashboard = await http.get("/dashboard")
    finally:
        await delete_topology(settings)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert live.headers["x-correlation-id"] == "probe-1"
    assert len(ready.headers["x-correlation-id"]) == 32  # none sent: a new one, echoed
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok", "store": "ok"}}
    assert (dashboard.status_code, dashboard.headers["location"]) == (303, "dashboard/sign-in")  # no key


async def test_readyz_names_each_failing_check_without_a_url(prefix: str, store_path: Path) -> None:
    password = "pg-secret-7f3a"  # made up; must never be echoed
    unreachable_store = f"postgresql://recalls:{password}@127.0.0.1:1/recalls"
    settings = base_settings(prefix, sqlite_path=store_path, database_url=unreachable_store, **LIGHT)
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    db = await Database.open(settings)  # opens no connection until used
    try:
        async with Publisher.on_connection(
            connection, Topology(settings.prefix, settings.retry_tiers), declare=True
        ) as publisher:
            app = create_app(settings, db, publisher, connection=connection, surfaces=[dashboard.surface])
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
