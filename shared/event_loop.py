"""The event loop a worker process runs on: uvloop's where it is installed, else asyncio's own.

A worker spends most of its CPU in the loop's machinery (callbacks, sockets, timers) across the four
exchanges a command costs it (consume, DVSA, publish, ack), and uvloop does that work in C (the CPU per
call is in bench/fleet_throughput.py's results).  uvloop has no Windows build, hence the fallback; the
behaviour is the same on either loop.
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
