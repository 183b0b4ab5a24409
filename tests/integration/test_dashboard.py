"""The live dashboard in a real headless Chromium, while a real worker applies commands to the sandbox.

The page is loaded before anything flows; then creates are published and a batch check is submitted,
and the page, refreshing by itself, must show create calls per second above zero, the worker, its
token, queue depths, and the batch's progress bar full with its download links (which work).  A
screenshot is saved to ``RECALLS_SCREENSHOT_DIR`` (else the test's directory) and its path printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractChannel
from playwright.async_api import Page, expect

from shared.settings import Settings
from tests.integration.conftest import publish
from tests.integration.test_api_ops import running_ops_api
from tests.integration.test_fleet_core import create, vin
from tests.support.browser import headless_chromium, screenshot_dir
from workers.runtime import Worker

pytestmark = pytest.mark.integration

CREATES = 60  # more than two seconds of the create budget: several seconds of the chart show calls
SLOW = 15_000  # ms: a batch passes through the bulk lane, a worker, the sandbox and the ledger


async def test_the_dashboard_follows_the_fleet_live(
    settings: Settings, channel: AbstractChannel, worker: Worker, tmp_path: Path
) -> None:
    async with running_ops_api(settings) as api, headless_chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 1100})
        await page.goto(f"{api.http.base_url}/dashboard?key={api.key}")
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
        await check_links(page, batch_id, api.http)
        await save_screenshot(page, tmp_path)


async def check_links(page: Page, batch_id: str, http: httpx.AsyncClient) -> None:
    """The batch's JSON and CSV links answer its results."""
    batch = page.locator(f'#batches tr[data-batch="{batch_id}"]')
    results = await batch.get_by_role("link", name="JSON").get_attribute("href")
    download = await batch.get_by_role("link", name="CSV").get_attribute("href")
    assert results is not None and download is not None
    answer = await http.get(results)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["job"]["batchId"] == batch_id
    csv = await http.get(download)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")


async def save_screenshot(page: Page, tmp_path: Path) -> None:
    path = screenshot_dir(tmp_path) / "dashboard.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"dashboard screenshot: {path}")
