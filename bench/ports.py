"""A free loopback port to name in advance (a worker's /metrics, a cluster node, a sandbox in settings).

A port the kernel picks for a probe socket comes from its ephemeral range, from which it also gives
every outgoing connection its local port: between the probe and the server's bind, one of the many
connections a fault run opens could take it ("address already in use", seen in CI).  So ports are
drawn below that range, where no outgoing connection lands, and probed before they are handed out.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20_000
_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, below the ephemeral range."""
    ceiling = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(LOWEST, ceiling)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {LOWEST}-{ceiling - 1}")


def _ephemeral_start() -> int:
    try:
        start = int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default
    return start if start > LOWEST + 1000 else 32_768
