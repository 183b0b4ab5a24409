"""A lock per key: one holder per key at a time, any number of keys at once."""

from __future__ import annotations

import asyncio
from types import TracebackType


class KeyedLock:
    """Serialises work per key while unrelated keys run concurrently; holds no memory for idle keys."""

    def __init__(self) -> None:
        # A held key maps to the event its waiters wait on, made only when one has to wait.
        self._held: dict[str, asyncio.Event | None] = {}

    def hold(self, key: str) -> _Hold:
        """``async with lock.hold(key):`` runs its body while no other holder of ``key`` does."""
        return _Hold(self._held, key)


class _Hold:
    # A class rather than @asynccontextmanager: the publisher takes one per message, and a generator-based
    # context manager costs several times more.
    __slots__ = ("_held", "_key")

    def __init__(self, held: dict[str, asyncio.Event | None], key: str) -> None:
        self._held = held
        self._key = key

    async def __aenter__(self) -> None:
        held, key = self._held, self._key
        # No await between the check and the claim, so two waiters cannot both claim the key.
        while key in held:
            released = held[key]
            if released is None:
                released = held[key] = asyncio.Event()
            await released.wait()
        held[key] = None

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        released = self._held.pop(self._key)
        if released is not None:
            released.set()
