"""The deliveries a consumer is handling, so that a stop can let them finish (or hand them back).

Each delivery is handled in a task of its own, shielded from the one the AMQP library runs the callback
in: when a connection or channel closes, the library cancels that one.  A handler cut off then, after
DVSA applied its call and before the ledger heard of it, would leave the redelivered copy to apply it
again; shielded, it finishes, and writes what DVSA answered, though it can no longer ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

Handle = Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]
log = logging.getLogger("recalls.worker")


class InFlight:
    """Wraps a message handler to track its running deliveries."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def tracking(self, handle: Handle) -> Handle:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.create_task(handle(message))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
            with contextlib.suppress(Exception):  # logged once, by _finished
                await asyncio.shield(task)

        return on_message

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its caller may be gone (the channel closed): this is the only place left to say so.
            log.error("a delivery's handler failed", exc_info=task.exception())

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
