"""A free TCP port on loopback, for servers a test starts on a port it must name in settings.

The one implementation lives in :mod:`bench.ports` (the benchmarks and the fault suite need it too).
"""

from __future__ import annotations

from bench.ports import free_port

__all__ = ["free_port"]
