"""Waiting on what a component logs: the only sign of some events from outside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator


class Logged(logging.Handler):
    """Counts the records of a logger whose message contains ``text``; wait for the n-th with :meth:`seen`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.count = 0
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self._changed.set()

    async def seen(self, count: int = 1, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


@contextlib.contextmanager
def watching(logger: str, text: str) -> Iterator[Logged]:
    """A :class:`Logged` on ``logger`` for the block's duration, which lets its info records through."""
    handler, watched = Logged(text), logging.getLogger(logger)
    level = watched.level
    watched.addHandler(handler)
    watched.setLevel(min(watched.getEffectiveLevel(), logging.INFO))
    try:
        yield handler
    finally:
        watched.removeHandler(handler)
        watched.setLevel(level)
