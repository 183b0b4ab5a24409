"""Waiting on what can only be polled: a scraped endpoint, a counter in another process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll_until(
    read: Callable[[], Awaitable[T]], holds: Callable[[T], bool], *, timeout: float = 20, every: float = 0.1
) -> T:
    """Read until ``holds(reading)``; raise TimeoutError with the last reading after ``timeout`` seconds."""
    reading = await read()
    try:
        async with asyncio.timeout(timeout):
            while not holds(reading):  # nothing to await: the value lives elsewhere
                await asyncio.sleep(every)
                reading = await read()
    except TimeoutError:
        raise TimeoutError(f"still not as expected after {timeout:g} s: {reading!r}"[:2000]) from None
    return reading
