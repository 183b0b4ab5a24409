"""The live dashboard: its snapshot adds up the workers' stats; the page in a real headless Chromium.

The snapshot test publishes known stats as three workers would (one with a clock an hour wrong) and
reads the sums back, and the batches of the calling key only.  The page test opens the page, meets
the sign-in form, is refused a wrong key and signs in with an operator's key before anything flows;
then creates are published and a batch check is submitted, and the page, refreshing by itself while a
real worker applies them to the sandbox, must show create calls per second above zero, the worker,
its token, queue depths, and the batch's progress bar full with its download links (which work with
the session alone).  No URL the page requests holds the key, and its session cookie is HttpOnly and
SameSite=Strict.  Screenshots of the refused sign-in and of the dashboard are saved to
``RECALLS_SCREENSHOT_DIR`` (else the test's directory) and their paths printed.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from playwright.async_api import ConsoleMessage, Page, expect

from recalls.producers.batch_api.auth import SESSION_COOKIE
from recalls.shared.contracts import VERBS
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.telemetry import WorkerStats, declare_stats, encode_stats
from recalls.shared.topology import LANES, Topology
from recalls.workers.runtime import Worker
from tests.integration.conftest import base_settings, publish
from tests.support.batch_api import LIGHT, Api, assert_error, delete_topology, running_ops_api
from tests.support.browser import headless_chromium, screenshot_dir
from tests.support.commands import create, vin

pytestmark = pytest.mark.integration

CREATES = 60  # more than two seconds of the create budget: several seconds of the chart show calls
SLOW = 15_000  # ms: a batch passes through the bulk lane, a worker, the sandbox and the ledger


async def published_stats(settings: Settings, *stats: WorkerStats, junk: bytes = b"") -> None:
    """Publish ``stats`` (and ``junk`` first, if given) to the stats exchange, as workers do."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection, connection.channel() as channel:
        exchange = await declare_stats(channel, Topology(settings.prefix))
        bodies = [junk] if junk else []
        for body in [*bodies, *(encode_stats(one) for one in stats)]:
            await exchange.publish(aio_pika.Message(body), routing_key="")


async def operator(api: Api) -> Api:
    """``api`` with a key of its operators: ``ops`` to see the fleet, ``batch`` to submit batches."""
    _, key = await ApiKeys(api.db).create("operators", scopes=("batch", "ops"))
    return Api(api.http, key, api.db)


async def snapshot_once(api: Api, ready: Any, key: str | None = None) -> dict[str, Any]:
    """The snapshot once ``ready(snapshot)`` holds (stats travel through RabbitMQ, and a second ends)."""
    async with asyncio.timeout(10):
        while True:
            response = await api.http.get("/dashboard/data", headers={"x-api-key": key or api.key})
            assert response.status_code == 200, response.text
            snapshot: dict[str, Any] = response.json()
            if ready(snapshot):
                return snapshot


async def test_the_snapshot_adds_up_every_workers_stats_and_shows_the_keys_batches(
    prefix: str, store_path: Path
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    now = time.time()
    first = WorkerStats(
        worker="host-a:1",
        sent_at=now - 2,
        interval=1.0,
        calls={"create": {"201": 20, "429": 2}},
        outcomes={"create": {"applied": 20}},
        retries={"0.2s": 2},
        dead_letters={"rejected": 1},
        in_flight=3,
        token_expires_at=now + 600,
        token_refreshes=1,
    )
    second = WorkerStats(
        worker="host-b:2",
        sent_at=now - 2,
        interval=1.0,
        calls={"create": {"201": 5}, "fix": {"timeout": 1}},
        dead_letters={"retries_exhausted": 2},
        in_flight=1,
        token_expires_at=now + 900,
    )
    an_hour_behind = WorkerStats(
        worker="host-c:3", sent_at=now - 3600, interval=1.0, calls={"get": {"200": 7}}
    )
    try:
        async with running_ops_api(settings) as customer:
            assert_error(await customer.http.get("/dashboard/data"), 401, "MISSING_API_KEY")
            api = await operator(customer)
            accepted = await api.submit({"vins": [vin(1), vin(2)]})
            batch_id = accepted.json()["data"]["batchId"]
            await published_stats(settings, first, second, an_hour_behind, junk=b"not a WorkerStats")
            # Figures are shown once their second has ended: the wrong clock's are filed under arrival.
            snapshot = await snapshot_once(api, lambda got: sum(got["calls"]["get"]) > 0)
            _, stranger = await ApiKeys(api.db).create("another team", scopes=("ops",))
            strangers = await snapshot_once(api, lambda _got: True, key=stranger)
    finally:
        await delete_topology(settings)

    assert snapshot["rate_limit"] == 25
    assert snapshot["workers"] == ["host-a:1", "host-b:2", "host-c:3"]
    assert snapshot["in_flight"] == 4
    assert snapshot["statuses"]["create"] == {"201": 25, "429": 2}
    assert snapshot["statuses"]["fix"] == {"timeout": 1}
    assert snapshot["outcomes"]["create"] == {"applied": 20}
    assert snapshot["retries"] == {"0.2s": 2}
    assert snapshot["dead_letters"] == {"rejected": 1, "retries_exhausted": 2}
    assert snapshot["token_refreshes"] == 1
    assert 890 < snapshot["token_expires_in"] <= 900  # the newest token any worker holds
    series = snapshot["calls"]
    assert series["create"][math.floor(now - 2) - snapshot["start"]] == 27  # both workers' second
    assert sum(series["create"]) == 27 and sum(series["fix"]) == 1
    assert sum(series["get"]) == 7  # the wrong clock's figures counted when they came, not an hour ago
    assert len(series["delete"]) == 300
    assert snapshot["queues"]["dead"] == 0
    assert {(queue["verb"], queue["lane"]) for queue in snapshot["queues"]["commands"]} == {
        (verb, lane) for verb in VERBS for lane in LANES
    }
    assert [batch["batch_id"] for batch in snapshot["batches"]] == [batch_id]
    assert snapshot["batches"][0]["total_vins"] == 2 and not snapshot["batches"][0]["finished"]
    assert strangers["batches"] == [] and strangers["workers"] == snapshot["workers"]


async def test_the_dashboard_follows_the_fleet_live(
    settings: Settings, channel: AbstractChannel, worker: Worker, tmp_path: Path
) -> None:
    async with running_ops_api(settings) as customer, headless_chromium() as browser:
        api = await operator(customer)
        page = await browser.new_page(viewport={"width": 1280, "height": 1100})
        failures = watch_for_errors(page)
        requested = watch_requests(page)
        await sign_in_through_the_form(page, api, failures, tmp_path)
        await expect(page.locator("#status")).to_have_text("live")
        create_now = page.locator('#verbs tr[data-verb="create"] td.calls-now')
        await expect(create_now).to_have_text("0.0")  # nothing has flowed yet

        for n in range(CREATES):
            await publish(channel, settings, create(n))
        vins = [vin(CREATES + n) for n in range(3)]
        accepted = await api.submit({"vins": vins})
        assert accepted.status_code == 202, accepted.text
        batch_id = accepted.json()["data"]["batchId"]

        await expect(create_now).not_to_have_text("0.0", timeout=SLOW)
        await expect(page.locator('#verbs tr[data-verb="create"] td.calls-window')).to_have_text(
            str(CREATES), timeout=SLOW
        )
        await expect(page.locator("#workers")).to_have_text("1")
        await expect(page.locator("#token-expiry")).to_have_text(re.compile(r"^\d+ s$"))
        live_depth = page.locator('#queues tr[data-verb="create"] td.live')
        await expect(live_depth).to_have_text(re.compile(r"^\d+$"))
        await expect(page.locator("#dead-depth")).to_have_text("0")
        batch = page.locator(f'#batches tr[data-batch="{batch_id}"]')
        bar = batch.get_by_role("progressbar")
        await expect(bar).to_have_attribute("aria-valuemax", "3")
        await expect(bar).to_have_attribute("aria-valuenow", "3", timeout=SLOW)
        await expect(batch.locator("td.state")).to_have_text("completed")
        await check_links(page, batch_id, api.key)
        await save_screenshot(page, tmp_path)
        [session] = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
        assert failures == []
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert api.key not in session["value"]
    assert len(requested) > 10 and [url for url in requested if api.key in url] == []


async def sign_in_through_the_form(page: Page, api: Api, failures: list[str], tmp_path: Path) -> None:
    """Open the dashboard without a session, meet the sign-in page, refused once, then sign in."""
    await page.goto(f"{api.http.base_url}/dashboard")
    await expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    key = page.get_by_label("API key")
    await key.fill(f"rk_00000000_{'A' * 32}")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#problem")).to_have_text("key: unknown or revoked API key")
    await save_screenshot(page, tmp_path, "sign-in")
    assert [failure for failure in failures if "401" not in failure] == []  # the browser logs the 401
    failures.clear()
    await key.fill(api.key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))


def watch_requests(page: Page) -> list[str]:
    """The URL of every request the page makes from now on (navigations, scripts, fetches)."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def watch_for_errors(page: Page) -> list[str]:
    """The page's script errors and console errors from now on (a refused load or CSP violation is one)."""
    failures: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            failures.append(f"{message.text} at {message.location['url']}")

    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("console", on_console)
    return failures


async def check_links(page: Page, batch_id: str, key: str) -> None:
    """The batch's JSON and CSV links hold no key and answer its results to the signed-in browser."""
    batch = page.locator(f'#batches tr[data-batch="{batch_id}"]')
    results = await batch.get_by_role("link", name="JSON").get_attribute("href")
    download = await batch.get_by_role("link", name="CSV").get_attribute("href")
    assert results is not None and download is not None
    assert key not in results and key not in download
    answer = await page.request.get(urljoin(page.url, results))  # the browser's cookies, and no key
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["data"]["job"]["batchId"] == batch_id
    csv = await page.request.get(urljoin(page.url, download))
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")


async def save_screenshot(page: Page, tmp_path: Path, name: str = "dashboard") -> None:
    path = screenshot_dir(tmp_path) / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"{name} screenshot: {path}")
