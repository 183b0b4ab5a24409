"""The deliveries a consumer is handling, so that a stop can let them finish (or hand them back)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

Handle = Callable[[AbstractIncomingMessage], Awaitable[None]]


class InFlight:
    """Wraps a message handler to track its running deliveries."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def tracking(self, handle: Handle) -> Handle:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await handle(message)
            finally:
                self._tasks.discard(task)

        return on_message

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` s for the deliveries in hand; cancel the rest and return how many."""
        pending = set(self._tasks)
        if not pending:
            return 0
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()  # unacked: the broker requeues it when the channel closes
        if late:
            await asyncio.wait(late)
        return len(late)
