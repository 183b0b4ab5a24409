"""The event loop a worker process runs on: uvloop's where it is installed, else asyncio's own.

A worker spends most of its CPU in the loop's machinery (callbacks, sockets, timers) across the four
calls a command costs it (consume, DVSA, publish, ack).  uvloop does that work in C: one worker draining
all four verbs at 25/s went from 3.1-3.2 to 2.8 ms of CPU per DVSA call (bench/fleet_throughput.py).
uvloop has no Windows build, hence the fallback; the behaviour is the same on either loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a new event loop, as :func:`asyncio.run` does."""
    try:
        import uvloop  # noqa: PLC0415 (optional: absent on Windows)
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
