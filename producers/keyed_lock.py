"""A lock per key: one holder per key at a time, any number of keys at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLock:
    """Serialises work per key while unrelated keys run concurrently; holds no memory for idle keys."""

    def __init__(self) -> None:
        # A held key maps to the event its waiters wait on, made only when one has to wait.
        self._held: dict[str, asyncio.Event | None] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        # No await between the check and the claim, so two waiters cannot both claim the key.
        while key in self._held:
            released = self._held[key]
            if released is None:
                released = self._held[key] = asyncio.Event()
            await released.wait()
        self._held[key] = None
        try:
            yield
        finally:
            released = self._held.pop(key)
            if released is not None:
                released.set()
