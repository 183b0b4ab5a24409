"""Where the machine's own services listen, for tests that talk to them directly."""

from __future__ import annotations

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
