"""A real headless Chromium for page tests: Debian's ``chromium``, driven by playwright.

playwright's own browser download is never used (``playwright install`` needs the network); the test
machine's ``/usr/bin/chromium`` is, and ``scripts/setup`` installs it.  A missing browser fails the test
with what to run rather than skipping it: a skipped page test would pass a broken page.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Quiet and offline: no sandbox (tests may run as root), no GPU, no calls home.
_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, closed on the way out."""
    assert await asyncio.to_thread(CHROMIUM.exists), f"{CHROMIUM} is missing: run `bash scripts/setup`"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def screenshot_dir(default: Path) -> Path:
    """Where page tests save screenshots: ``RECALLS_SCREENSHOT_DIR`` if set, else ``default``."""
    chosen = Path(os.environ.get("RECALLS_SCREENSHOT_DIR") or default)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen
