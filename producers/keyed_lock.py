"""A lock per key: one holder per key at a time, any number of keys at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLock:
    """Serialises work per key while unrelated keys run concurrently; holds no memory for idle keys."""

    def __init__(self) -> None:
        self._released: dict[str, asyncio.Event] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        # No await between the check and the claim, so two waiters cannot both claim the key.
        while (busy := self._released.get(key)) is not None:
            await busy.wait()
        released = self._released[key] = asyncio.Event()
        try:
            yield
        finally:
            del self._released[key]
            released.set()
