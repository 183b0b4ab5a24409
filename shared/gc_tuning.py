"""Keep the garbage collector from pausing a process whose calls are timed to milliseconds.

DVSA's limit leaves about 20 ms of slack per second at the spacing the fleet uses; a full collection
over everything imported at start-up takes 40-90 ms in a worker.  Freezing the start-up objects moves
them out of the collector's sight, and a higher first threshold makes young collections rarer.
"""

from __future__ import annotations

import gc


def settle_after_startup() -> None:
    """Call once the process has finished starting up."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(10_000, middle, oldest)
