"""The batch API over real HTTP: uvicorn on loopback, the store, RabbitMQ; end to end, a worker and sandbox.

Every error answers in the one shape with CarsXE's status and name; a batch is only its key's; a batch
goes uploading -> processing -> completed, its results match what the sandbox holds, and the same VINs
submitted again are answered from the cache in the submit response itself.

A body over the limit is refused before it is read, on every route; a CSV download quotes a cell that a
spreadsheet would run; a key keeps to its quota, counted in the store, so two instances share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import msgspec
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import text

from bench.faults.harness import fresh_database
from recalls.ops import dashboard
from recalls.producers.batch_api import create_app, serve
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.contracts import GetCommand, Recall, utc_now
from recalls.shared.message_ids import content_id
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.batches import CHECK_KIND, Batches, check_message_id
from recalls.shared.store.checks import VinChecks
from recalls.shared.store.database import Database
from tests.integration.conftest import Sandbox, base_settings, running_worker
from tests.support.batch_api import (
    API,
    LIGHT,
    Api,
    UvicornStarted,
    assert_error,
    by_vin,
    checked,
    delete_topology,
    expected_results,
    outcome,
    running_api,
    serving,
)
from tests.support.commands import vin

pytestmark = pytest.mark.integration

OPEN = {  # csvUrl and webhookUrl may name this machine; small limits to meet
    "allow_private_urls": True,
    "public_url": "https://recalls.example.com",
    "csv_url_max_bytes": 200,
    "csv_url_timeout": 0.5,
    "csv_url_max_redirects": 2,
}


@pytest.fixture
async def api(prefix: str, store_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The API without a worker; ``@pytest.mark.settings(...)`` adds to the light settings."""
    marker = request.node.get_closest_marker("settings")
    settings = base_settings(prefix, sqlite_path=store_path, **{**LIGHT, **(marker.kwargs if marker else {})})
    try:
        async with running_api(settings) as running:
            yield running
    finally:
        await delete_topology(settings)


# --- the description ------------------------------------------------------------------------------------


async def test_openapi_describes_the_error_shape_and_the_key(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    error = spec["components"]["schemas"]["ErrorBody"]
    assert set(error["properties"]) == {"success", "error", "message"}
    assert "BULK_RECALL_BATCH_NOT_FOUND" in error["properties"]["error"]["enum"]
    schemes = spec["components"]["securitySchemes"]
    assert {(s["type"], s["in"], s["name"]) for s in schemes.values()} == {
        ("apiKey", "query", "key"),
        ("apiKey", "header", "x-api-key"),
    }
    submit = spec["paths"][f"{API}/submit"]["post"]
    assert submit["security"] and "202" in submit["responses"]
    for status in ("400", "401", "502"):
        schema = submit["responses"][status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorBody")
    download = spec["paths"][f"{API}/download"]["get"]
    assert "text/csv" in download["responses"]["200"]["content"]
    assert "409" in download["responses"]


# --- keys and visibility --------------------------------------------------------------------------------


async def test_a_key_is_needed_and_read_from_the_query_or_the_header(api: Api) -> None:
    absent = await api.http.get(f"{API}/status", params={"batchId": "b1"})
    assert_error(absent, 401, "MISSING_API_KEY", "key:")
    wrong = "rk_00000000_" + "x" * 32
    unknown = await api.http.get(f"{API}/status", params={"batchId": "b1", "key": wrong})
    assert_error(unknown, 401, "USER_NOT_FOUND", "key:")
    assert wrong not in unknown.text
    by_header = await api.http.get(f"{API}/status", params={"batchId": "b1"}, headers={"x-api-key": api.key})
    assert_error(by_header, 404, "BULK_RECALL_BATCH_NOT_FOUND", "batchId:")  # let in, no such batch
    assert_error(await api.get("status", "b1"), 404, "BULK_RECALL_BATCH_NOT_FOUND")

    keys = ApiKeys(api.db)
    record, other = await keys.create("revoked soon")
    assert_error(await api.get("status", "b1", key=other), 404, "BULK_RECALL_BATCH_NOT_FOUND")
    assert await keys.revoke(record.id)
    revoked = await api.get("status", "b1", key=other)
    assert_error(revoked, 401, "USER_NOT_FOUND")
    assert other not in revoked.text


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """No database URL (the test's SQLite file), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    async with fresh_database("api") as url:
        yield url


async def test_a_batch_is_published_on_the_bulk_lane_and_seen_only_by_its_key(
    prefix: str, store_path: Path, store_url: str | None
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, database_url=store_url, **LIGHT)
    vins = [vin(1), vin(2), vin(3)]
    try:
        async with running_api(settings) as api:
            accepted = await api.submit({"vins": vins})
            assert accepted.status_code == 202, accepted.text
            body = accepted.json()
            assert body["success"] is True and "queued" in body["message"]
            data = body["data"]
            batch_id = data["batchId"]
            assert data["status"] == "uploading"
            assert (data["totalVins"], data["processedVins"], data["hitCount"], data["hitRate"]) == (
                3,
                0,
                0,
                0,
            )
            assert data["createdAt"].endswith("Z") and "completedAt" not in data

            running = await api.status_until(batch_id, "processing")
            assert running["totalVins"] == 3 and running["errorMessage"] is None
            assert "completedAt" not in running
            for what in ("results", "download"):
                assert_error(await api.get(what, batch_id), 409, "BULK_RECALL_BATCH_NOT_COMPLETE", "batchId:")

            _, stranger = await ApiKeys(api.db).create("another team")
            for what in ("status", "results", "download"):
                assert_error(await api.get(what, batch_id, key=stranger), 404, "BULK_RECALL_BATCH_NOT_FOUND")

        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection, connection.channel() as channel:
            queue = await channel.get_queue(f"{prefix}.get.bulk")
            published = []
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                published.append(msgspec.json.decode(message.body, type=GetCommand))
        assert sorted(command.vin for command in published) == vins
        for command in published:
            assert command.message_id == content_id(f"check|{batch_id}|{command.vin}")
            assert command.correlation_id == batch_id
    finally:
        await delete_topology(settings)


async def test_a_batch_with_a_failed_check_is_partial_and_says_why(api: Api) -> None:
    _, owner_key = await ApiKeys(api.db).create("owner")
    owner = await ApiKeys(api.db).verify(owner_key)
    assert owner is not None
    batches = Batches(api.db)
    batch_id = await batches.start(CHECK_KIND, "api", owner=owner.id)
    good, bad = (
        GetCommand(vin=v, correlation_id=batch_id, message_id=content_id(v)) for v in (vin(1), vin(2))
    )
    await batches.claim(batch_id, [good, bad])
    await batches.published([good.message_id, bad.message_id])
    await batches.close_publishing(batch_id, rejected=0, skipped=0)
    recall = Recall(manufacturer_campaign_reference="CAMP-A", repair_status="NOT_FIXED")
    await batches.record(
        outcome(good, "applied", recalls=[recall]), outcome(bad, "failed", reason="DVSA 400 bad")
    )

    status = (await api.get("status", batch_id, key=owner_key)).json()["data"]
    assert (status["status"], status["processedVins"], status["hitCount"], status["hitRate"]) == (
        "partial",
        2,
        1,
        50.0,
    )
    results = (await api.get("results", batch_id, key=owner_key)).json()["data"]["results"]
    assert by_vin(results) == {
        vin(1): {
            "vin": vin(1),
            "hasRecalls": True,
            "recallCount": 1,
            "recalls": [{"manufacturerCampaignReference": "CAMP-A", "repairStatus": "NOT_FIXED"}],
        },
        vin(2): {
            "vin": vin(2),
            "hasRecalls": False,
            "recallCount": 0,
            "recalls": [],
            "error": "DVSA 400 bad",
        },
    }
    rows = list(csv.DictReader(io.StringIO((await api.get("download", batch_id, key=owner_key)).text)))
    assert {(row["vin"], row["error"]) for row in rows} == {(vin(1), ""), (vin(2), "DVSA 400 bad")}


async def test_vins_checked_recently_are_answered_from_the_cache(api: Api) -> None:
    open_recall = Recall(manufacturer_campaign_reference="CAMP-A", repair_status="NOT_FIXED")
    long_ago = utc_now() - dt.timedelta(days=2)  # older than check_freshness: asked again
    await VinChecks(api.db).remember(
        checked(vin(1), [open_recall]), checked(vin(2), []), checked(vin(3), [open_recall], at=long_ago)
    )
    answered = (await api.submit({"vins": [vin(1), vin(2)]})).json()
    data = answered["data"]
    assert (data["status"], data["totalVins"], data["processedVins"], data["hitCount"]) == (
        "completed",
        2,
        2,
        1,
    )
    assert data["hitRate"] == 50.0 and "completedAt" in data and "recent results" in answered["message"]
    results = (await api.get("results", data["batchId"])).json()["data"]["results"]
    assert {r["vin"]: (r["hasRecalls"], r["recallCount"]) for r in results} == {
        vin(1): (True, 1),
        vin(2): (False, 0),
    }

    mixed = (await api.submit({"vins": [vin(1), vin(3), vin(4)]})).json()["data"]
    assert (mixed["status"], mixed["totalVins"], mixed["processedVins"], mixed["hitCount"]) == (
        "uploading",
        3,
        1,
        1,
    )
    running = await api.status_until(mixed["batchId"], "processing")
    assert (running["totalVins"], running["processedVins"]) == (3, 1)


async def test_batches_older_than_the_retention_are_purged_at_start(prefix: str, store_path: Path) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    now = utc_now()
    async with Database.connect(settings) as db:
        _, key = await ApiKeys(db).create("owner")
        owner = await ApiKeys(db).verify(key)
        assert owner is not None
        old = now - dt.timedelta(seconds=settings.batch_retention + 3600)
        expired = await Batches(db, clock=lambda: old).start(CHECK_KIND, "api", owner=owner.id)
        kept = await Batches(db).start(CHECK_KIND, "api", owner=owner.id)
    try:
        async with running_api(settings) as api:
            assert_error(await api.get("status", expired, key=key), 404, "BULK_RECALL_BATCH_NOT_FOUND")
            assert (await api.get("status", kept, key=key)).status_code == 200
    finally:
        await delete_topology(settings)


# --- every refusal --------------------------------------------------------------------------------------


async def test_routing_errors_answer_in_the_one_shape(api: Api) -> None:
    not_post = await api.http.get(f"{API}/submit", params={"key": api.key})
    assert_error(not_post, 405, "ONLY_POST_ALLOWED", "method: GET")
    not_get = await api.http.post(f"{API}/status", params={"key": api.key, "batchId": "b1"})
    assert_error(not_get, 405, "METHOD_NOT_ALLOWED", "method: POST")
    assert_error(await api.http.get("/v1/nothing"), 404, "NOT_FOUND", "path: no endpoint")
    no_id = await api.http.get(f"{API}/status", params={"key": api.key})
    assert_error(no_id, 400, "BULK_RECALL_BATCH_INVALID_REQUEST", "batchId: Field required")


INVALID_BODIES = [
    pytest.param(None, "BULK_RECALL_BATCH_MISSING_VINS", "vins: none given", id="no body"),
    pytest.param({}, "BULK_RECALL_BATCH_MISSING_VINS", "vins: none given", id="empty"),
    pytest.param({"vins": [], "csv": "vin\n\n"}, "BULK_RECALL_BATCH_MISSING_VINS", "vins:", id="header only"),
    pytest.param(
        {"vins": [vin(n) for n in range(4)], "csv": "\n".join(vin(n) for n in range(2, 6))},
        "BULK_RECALL_BATCH_TOO_MANY_VINS",
        "more than the 5 distinct VINs",
        id="six distinct",
    ),
    pytest.param(
        {"vins": [vin(1), "WAUZZZ-8V"]},
        "BULK_RECALL_BATCH_INVALID_VIN",
        "vins[1]: must be 16 or 17 letters and digits (got 'WAUZZZ-8V')",
        id="vins",
    ),
    pytest.param(
        {"csv": f"Make,VIN\nAudi,{vin(1)}\nAudi,NOPE"},
        "BULK_RECALL_BATCH_INVALID_VIN",
        "csv line 3: must be 16 or 17 letters and digits (got 'NOPE')",
        id="csv",
    ),
    pytest.param({"vins": vin(1)}, "BULK_RECALL_BATCH_INVALID_REQUEST", "vins: Input should be a valid list"),
    pytest.param(
        {"vins": [1]}, "BULK_RECALL_BATCH_INVALID_REQUEST", "vins[0]: Input should be a valid string"
    ),
    pytest.param(
        {"vin": [vin(1)]}, "BULK_RECALL_BATCH_INVALID_REQUEST", "vin: Extra inputs are not permitted"
    ),
    pytest.param(
        {"vins": [vin(1)], "webhookUrl": "https://hooks.example.com/recalls"},
        "BULK_RECALL_BATCH_INVALID_WEBHOOK_URL",
        "webhookUrl: webhooks are off on this server (RECALLS_PUBLIC_URL is not set)",
        id="webhook without a public URL",
    ),
    pytest.param(
        {"csvUrl": "ftp://files.example.com/vins.csv"},
        "BULK_RECALL_BATCH_CSV_URL_INVALID",
        "csvUrl: must be an https URL",
    ),
    pytest.param(
        {"csvUrl": "https://127.0.0.1/vins.csv"}, "BULK_RECALL_BATCH_CSV_URL_HOST_NOT_ALLOWED", "csvUrl:"
    ),
]


@pytest.mark.parametrize(("body", "name", "message"), INVALID_BODIES)
async def test_a_submit_is_refused_naming_the_field(api: Api, body: object, name: str, message: str) -> None:
    assert_error(await api.submit(body), 400, name, message)


@pytest.mark.parametrize("body", [b"{vins", b"\xfe"])
async def test_a_body_that_is_not_json_is_refused(api: Api, body: bytes) -> None:
    response = await api.http.post(
        f"{API}/submit",
        params={"key": api.key},
        content=body,
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "BULK_RECALL_BATCH_INVALID_REQUEST", "body: not valid JSON")


@pytest.mark.settings(public_url="https://recalls.example.com")
async def test_a_plain_http_webhook_is_refused_without_private_urls(api: Api) -> None:
    body = {"vins": [vin(1)], "webhookUrl": "http://hooks.example.com/recalls"}
    assert_error(
        await api.submit(body), 400, "BULK_RECALL_BATCH_INVALID_WEBHOOK_URL", "webhookUrl: must be an https"
    )


URLS_REFUSED_AT_SUBMIT = [  # a host name DNS would not take as written, a port not allowed
    ("https://a..example.com/vins", "host: has an empty label"),
    (f"https://{'a' * 64}.example.com/vins", "host: has a label longer than 63 characters"),
    ("https://files.example.com:8443/vins", "port: 8443 is not allowed (allowed: 443, 9443)"),
]


@pytest.mark.settings(public_url="https://recalls.example.com", allowed_ports=(9443,))
async def test_a_url_is_checked_whole_at_submit_naming_its_field(api: Api) -> None:
    for url, reason in URLS_REFUSED_AT_SUBMIT:
        webhook = await api.submit({"vins": [vin(1)], "webhookUrl": url})
        assert_error(webhook, 400, "BULK_RECALL_BATCH_INVALID_WEBHOOK_URL", f"webhookUrl: {reason}")
        csv_url = await api.submit({"csvUrl": url})
        assert_error(csv_url, 400, "BULK_RECALL_BATCH_CSV_URL_INVALID", f"csvUrl: {reason}")
    listed = await api.submit({"vins": [vin(1)], "webhookUrl": "https://hooks.example.com:9443/recalls"})
    assert listed.status_code == 202, listed.text


async def test_a_failing_store_is_a_storage_error(api: Api) -> None:
    accepted = (await api.submit({"vins": [vin(1)]})).json()["data"]
    async with api.db.writing() as connection:
        await connection.execute(text("DROP TABLE batch_commands"))
    failed = await api.get("status", accepted["batchId"])
    assert_error(failed, 500, "BULK_RECALL_BATCH_STORAGE_ERROR", "store: unavailable")


# --- csvUrl ---------------------------------------------------------------------------------------------


@pytest.fixture
async def csv_host() -> AsyncIterator[str]:
    """A local file server with a CSV and every way a csvUrl can fail."""
    never = asyncio.Event()

    async def hang(_request: web.Request) -> web.Response:
        await never.wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/vins.csv", answer(f"VIN\n{vin(3)}\n{vin(4)}\n"))
    app.router.add_get("/big.csv", answer("\n".join([vin(1)] * 20)))
    app.router.add_get("/vins.json", answer("[]", "application/json"))
    app.router.add_get("/gone.csv", answer("gone", status=404))
    app.router.add_get("/loop.csv", answer("", status=302, headers={"Location": "/loop.csv"}))
    app.router.add_get("/slow.csv", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        never.set()
        await runner.cleanup()


def answer(body: str, content_type: str = "text/csv", **options: Any) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type, **options)

    return handler


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


CSV_URL_FAILURES = [
    ("/big.csv", 400, "BULK_RECALL_BATCH_CSV_URL_TOO_LARGE", "larger than 200 bytes"),
    ("/vins.json", 400, "BULK_RECALL_BATCH_CSV_URL_NOT_TEXT", "application/json"),
    ("/gone.csv", 400, "BULK_RECALL_BATCH_CSV_URL_HTTP_ERROR", "HTTP 404"),
    ("/loop.csv", 400, "BULK_RECALL_BATCH_CSV_URL_REDIRECT_ERROR", "csvUrl"),
    ("/slow.csv", 400, "BULK_RECALL_BATCH_CSV_URL_TIMEOUT", "csvUrl"),
]


@pytest.mark.settings(**OPEN)
async def test_every_csv_url_failure_has_its_name(api: Api, csv_host: str, closed_port: int) -> None:
    for path, status, name, fragment in CSV_URL_FAILURES:
        assert_error(await api.submit({"csvUrl": csv_host + path}), status, name, fragment)
    refused = await api.submit({"csvUrl": f"http://127.0.0.1:{closed_port}/vins.csv"})
    assert_error(refused, 502, "BULK_RECALL_BATCH_CSV_URL_FETCH_FAILED", "csvUrl")


@pytest.mark.settings(**OPEN)
async def test_inputs_are_merged_upper_cased_and_deduplicated(api: Api, csv_host: str) -> None:
    body = {
        "vins": [vin(1).lower(), f" {vin(2)} ", vin(1)],
        "csv": f"{vin(2)}\n\n{vin(3).lower()}\n",  # no header: one VIN a line
        "csvUrl": f"{csv_host}/vins.csv",  # vin(3), vin(4) under a header
        "webhookUrl": "http://127.0.0.1:9/hook",  # allowed here: private URLs are
    }
    accepted = await api.submit(body)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["data"]["totalVins"] == 4
    batch_id = accepted.json()["data"]["batchId"]
    assert (await api.status_until(batch_id, "processing"))["totalVins"] == 4


# --- end to end -----------------------------------------------------------------------------------------

E2E_VINS = [vin(100 + n) for n in range(12)]


async def seed(sandbox: Sandbox) -> None:
    """An open recall on the first VIN, a fixed one on the second, one of each on the third."""
    first, second, third = E2E_VINS[:3]
    recalls = [
        {"vin": first, "manufacturerCampaignReference": "CAMP-A", "recallCampaignStartDate": "2025-01-02"},
        {
            "vin": second,
            "manufacturerCampaignReference": "CAMP-B",
            "recallCampaignStartDate": "2024-05-06",
            "repairStatus": "FIXED",
            "rectificationDate": "2025-03-04",
        },
        {
            "vin": third,
            "manufacturerCampaignReference": "CAMP-C",
            "dvsaCampaignReference": "R/2024/123",
            "recallCampaignStartDate": "2024-07-08",
        },
        {
            "vin": third,
            "manufacturerCampaignReference": "CAMP-D",
            "recallCampaignStartDate": "2023-01-01",
            "repairStatus": "FIXED",
            "rectificationDate": "2024-02-03",
        },
    ]
    (await sandbox.admin.post("/__admin/recalls", json=recalls)).raise_for_status()


async def test_a_batch_is_checked_through_the_fleet_then_answered_from_the_cache(
    sandbox: Sandbox, settings: Settings, broker: aio_pika.abc.AbstractRobustConnection
) -> None:
    await seed(sandbox)
    async with running_api(settings) as api:
        csv_text = "Make,vin\n" + "\n".join(f"Audi,{v}" for v in E2E_VINS[6:])
        accepted = await api.submit({"vins": [v.lower() for v in E2E_VINS[:8]], "csv": csv_text})
        assert accepted.status_code == 202, accepted.text
        batch_id = accepted.json()["data"]["batchId"]
        assert accepted.json()["data"]["totalVins"] == 12
        await api.status_until(batch_id, "processing")
        assert_error(await api.get("results", batch_id), 409, "BULK_RECALL_BATCH_NOT_COMPLETE")

        async with running_worker(settings) as worker:
            assert worker.recorder is not None
            async with asyncio.timeout(60):
                await worker.recorder.recorded(len(E2E_VINS))
        status = (await api.get("status", batch_id)).json()["data"]
        assert status["status"] == "completed"
        assert (status["totalVins"], status["processedVins"], status["hitCount"]) == (12, 12, 2)
        assert status["hitRate"] == 16.67 and status["completedAt"].endswith("Z")

        expected = expected_results(await sandbox.recalls(), E2E_VINS)
        assert expected[E2E_VINS[2]]["recallCount"] == 2  # the seed is as meant
        results = (await api.get("results", batch_id)).json()["data"]
        assert results["job"]["status"] == "completed" and results["job"]["hitCount"] == 2
        assert by_vin(results["results"]) == by_vin(list(expected.values()))

        download = await api.get("download", batch_id)
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        disposition = download.headers["content-disposition"]
        assert disposition == f'attachment; filename="recalls_{batch_id}.csv"'
        rows = list(csv.DictReader(io.StringIO(download.text)))
        assert list(rows[0]) == [
            "vin",
            "hasRecalls",
            "recallCount",
            "manufacturerCampaignReference",
            "dvsaCampaignReference",
            "recallCampaignStartDate",
            "repairStatus",
            "error",
        ]
        assert len(rows) == 13  # one VIN with two recalls, the others one row each
        third = sorted(
            (r for r in rows if r["vin"] == E2E_VINS[2]), key=lambda r: r["manufacturerCampaignReference"]
        )
        assert [(r["hasRecalls"], r["recallCount"], r["repairStatus"]) for r in third] == [
            ("true", "2", "NOT_FIXED"),
            ("true", "2", "FIXED"),
        ]
        assert third[0]["dvsaCampaignReference"] == "R/2024/123"
        plain = next(r for r in rows if r["vin"] == E2E_VINS[5])
        assert (plain["hasRecalls"], plain["recallCount"], plain["manufacturerCampaignReference"]) == (
            "false",
            "0",
            "",
        )

        again = (await api.submit({"vins": E2E_VINS})).json()  # the worker's answers are the cache now
        data = again["data"]
        assert (data["status"], data["processedVins"], data["hitCount"]) == ("completed", 12, 2), again
        served = (await api.get("results", data["batchId"])).json()["data"]["results"]
        assert by_vin(served) == by_vin(list(expected.values()))
    assert (await sandbox.stats())["get"]["count"] == 12  # the second batch cost DVSA nothing


# --- the body limit -------------------------------------------------------------------------------------

LIMIT = 2_000_000  # RECALLS_API_MAX_BODY's default
MB = 1_000_000


def vins_body(size: int) -> bytes:
    """A JSON submit of about ``size`` bytes: one VIN over and over, then another."""
    item = f'"{vin(1)}",'.encode()
    return b'{"vins": [' + item * (size // len(item)) + f'"{vin(2)}"]}}'.encode()


async def test_a_chunked_upload_is_stopped_once_it_passes_the_limit(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        body = vins_body(3 * MB)
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    # No Content-Length: httpx sends a generator's bytes chunked, so only counting can stop them.
    response = await api.http.post(
        f"{API}/submit",
        params={"key": api.key},
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "BULK_RECALL_BATCH_TOO_LARGE", f"body: larger than {LIMIT} bytes")


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(api: Api) -> None:
    for path in (f"{API}/submit", "/no/such/route"):  # every route: the limit comes before routing
        reader, writer = await asyncio.open_connection(api.http.base_url.host, api.http.base_url.port)
        head = f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {20 * MB}\r\n\r\n".encode())  # and not one byte of the body
        try:
            async with asyncio.timeout(10):  # a server that waits for the body never answers
                answer = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer


async def test_a_body_within_the_limit_is_read_whole(api: Api) -> None:
    response = await api.http.post(
        f"{API}/submit",
        params={"key": api.key},
        content=vins_body(LIMIT - 100),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["data"]["totalVins"] == 2


# --- CSV that a spreadsheet cannot run ------------------------------------------------------------------


def check(batch_id: str, n: int) -> GetCommand:
    """The batch's get of ``vin(n)``, as the API published it."""
    return GetCommand(vin=vin(n), message_id=check_message_id(batch_id, vin(n)))


FORMULAS = ['=HYPERLINK("http://evil.example")', "+1+2", "-3+4", "@SUM(A1)", "\tTAB", "\rCR"]


async def test_csv_cells_that_could_run_as_formulas_are_quoted_and_json_keeps_them(api: Api) -> None:
    batch_id = (await api.submit({"vins": [vin(1), vin(2)]})).json()["data"]["batchId"]
    await api.status_until(batch_id, "processing")
    recalls = [Recall(manufacturer_campaign_reference=value, repair_status="NOT_FIXED") for value in FORMULAS]
    await Batches(api.db).record(
        outcome(check(batch_id, 1), "applied", recalls=recalls),
        outcome(check(batch_id, 2), "failed", reason="=1+1 DVSA said no"),
    )

    rows = list(csv.DictReader(io.StringIO((await api.get("download", batch_id)).text)))
    references = sorted(row["manufacturerCampaignReference"] for row in rows if row["vin"] == vin(1))
    assert references == sorted("'" + value for value in FORMULAS)
    assert next(row["error"] for row in rows if row["vin"] == vin(2)) == "'=1+1 DVSA said no"
    assert {row["recallCount"] for row in rows} == {"6", "0"}  # other cells as they were

    results = by_vin((await api.get("results", batch_id)).json()["data"]["results"])
    shown = sorted(recall["manufacturerCampaignReference"] for recall in results[vin(1)]["recalls"])
    assert shown == sorted(FORMULAS) and results[vin(2)]["error"] == "=1+1 DVSA said no"


# --- quotas ---------------------------------------------------------------------------------------------

LIMITED = "BULK_RECALL_BATCH_RATE_LIMITED"


@dataclass
class TwoApis:
    """Two API instances on one store, each with its own engine and broker connection, as two processes."""

    https: tuple[httpx.AsyncClient, httpx.AsyncClient]
    db: Database

    async def submit(self, n: int, key: str) -> httpx.Response:
        """Submit ``vin(n)`` for ``key``, odd numbers to the second instance."""
        return await self.https[n % 2].post(f"{API}/submit", params={"key": key}, json={"vins": [vin(n)]})


@contextlib.asynccontextmanager
async def two_apis(settings: Settings) -> AsyncIterator[TwoApis]:
    async with contextlib.AsyncExitStack() as stack:
        https = []
        for _ in range(2):
            db = await stack.enter_async_context(Database.connect(settings))
            publisher = await stack.enter_async_context(Publisher.connect(publisher_config(settings)))
            https.append(
                await stack.enter_async_context(
                    serving(create_app(settings, db, publisher, surfaces=[dashboard.surface]))
                )
            )
        yield TwoApis((https[0], https[1]), db)


async def test_the_11th_submit_in_a_minute_is_refused_across_instances_while_another_key_submits(
    prefix: str, store_path: Path, store_url: str | None
) -> None:
    settings = base_settings(
        prefix, sqlite_path=store_path, database_url=store_url, api_max_open_batches=100, **LIGHT
    )
    try:
        async with two_apis(settings) as apis:
            keys = ApiKeys(apis.db)
            (_, busy), (_, other) = await keys.create("busy team"), await keys.create("other team")
            # All at once, half through each instance: the store counts them in turn all the same.
            answers = await asyncio.gather(*(apis.submit(n, busy) for n in range(15)))
            eleventh = await apis.submit(15, busy)
            theirs = await apis.submit(16, other)
    finally:
        await delete_topology(settings)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * 10 + [429] * 5, [answer.text for answer in answers]
    for refused in [answer for answer in answers if answer.status_code == 429] + [eleventh]:
        assert_error(refused, 429, LIMITED, "key: 10 batches submitted in the last minute")
        # The first submit leaves the window within the minute: never more to wait, never less than 1 s.
        assert 1 <= int(refused.headers["retry-after"]) <= 60, refused.headers
    assert theirs.status_code == 202, theirs.text


@pytest.mark.settings(api_rate_limit=100)
async def test_the_6th_open_batch_is_refused_until_one_completes(api: Api) -> None:
    accepted = [await api.submit({"vins": [vin(n)]}) for n in range(5)]
    assert [answer.status_code for answer in accepted] == [202] * 5
    sixth = await api.submit({"vins": [vin(5)]})
    assert_error(sixth, 429, LIMITED, "key: 5 batches still open, the most allowed is 5")
    assert sixth.headers["retry-after"] == "60"

    first = accepted[0].json()["data"]["batchId"]
    await api.status_until(first, "processing")
    assert await Batches(api.db).record(outcome(check(first, 0), "applied", recalls=[]))
    assert (await api.get("status", first)).json()["data"]["status"] == "completed"
    assert (await api.submit({"vins": [vin(5)]})).status_code == 202


# --- serve ----------------------------------------------------------------------------------------------


async def test_serve_runs_until_cancelled(prefix: str, store_path: Path) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    started = UvicornStarted()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(started)
    logger.setLevel(logging.INFO)
    try:
        serving = asyncio.create_task(serve(settings, "127.0.0.1", 0))
        async with asyncio.timeout(30):
            await started.event.wait()
        async with httpx.AsyncClient(base_url=started.url) as http:
            assert (await http.get("/openapi.json")).status_code == 200
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
            with pytest.raises(httpx.ConnectError):
                await http.get("/openapi.json")
    finally:
        logger.removeHandler(started)
        await delete_topology(settings)
