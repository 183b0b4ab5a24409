"""Group commit: writes asked for while one transaction runs share the next one.

A worker writes each command's outcome to the ledger before it reports it.  One transaction per command
would cost a commit and a trip to the store each; instead the first write starts a transaction at once,
and every write asked for meanwhile waits for the next, which takes them all.  Alone, a write waits for
nothing; under load, the commits per second stay near the store's own rate of them, whatever the rate
of writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Calls ``write`` with every item asked for since its last call began; each caller gets its outcome."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> None:
        """Return once ``item`` is written; raise what the write of its group raised."""
        done = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)  # a caller cancelled meanwhile no longer asks for it
        self._waiting.append((item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="group-commit")
        # Shielded: a caller that is cancelled does not cancel the write of the others in its group.
        await asyncio.shield(done)

    async def _write_all(self) -> None:
        group: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    await self._write([item for item, _ in group])
                except Exception as exc:
                    for _, done in group:
                        done.set_exception(exc)
                else:
                    for _, done in group:
                        done.set_result(None)
        finally:
            self._writer = None
            for _, done in [*group, *self._waiting]:  # cancelled (the loop is closing): no one is left
                if not done.done():
                    done.cancel()


def _retrieved(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()
