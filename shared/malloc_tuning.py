"""Keep glibc's heap from fragmenting under asyncio's socket reads, in a process that runs for weeks.

asyncio reads a socket with ``recv(256 KiB)`` and shrinks the result to what arrived.  glibc serves a
block that large with mmap at first, but raises its mmap threshold each time such a block is freed;
from then on the reads come from the heap, each leaving a small survivor in a large hole.  A worker's
resident memory rose about 1 MB a minute, for as long as the 30-minute soak ran, with Python's own
objects flat (121 -> 151 MB).  A fixed threshold (glibc then stops moving it) keeps those reads in mmap,
handed back to the system as soon as they are freed: the same soak then ended about 2 MB above its
level after the warm-up.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD = 128 * 1024  # glibc's own starting value


def pin_mmap_threshold(threshold: int = THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc to tune (nothing is changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold) == 1)
