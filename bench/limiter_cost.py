"""What the fleet limiter costs per DVSA call: the Redis round trips of one ``acquire``.

Runs ``RedisLimiter.acquire`` and ``sent`` against the real Redis with a limit so high that no caller
ever waits for a slot, so each timing is the limiter's own cost (reserve, gate, left: three scripts),
and prints p50/p99/max in milliseconds.

    .venv/bin/python bench/limiter_cost.py [--calls 20000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from redis import asyncio as aioredis

from recalls.shared.fleet_limiter import RedisLimiter
from recalls.shared.ratelimit import RateLimiter

UNREACHABLE_LIMIT = 10_000_000  # per second: no call ever waits for its slot


async def timings(limiter: RateLimiter, calls: int) -> list[float]:
    spent: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        permit = await limiter.acquire("get")
        await limiter.answered(permit)
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def summary(name: str, spent: list[float]) -> str:
    cuts = statistics.quantiles(spent, n=100)
    return f"{name:<22} p50 {cuts[49]:.3f} ms   p99 {cuts[98]:.3f} ms   max {max(spent):.3f} ms"


async def main(calls: int, redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    prefix = f"bench-limiter-{uuid.uuid4().hex[:8]}"
    try:
        fleet = RedisLimiter(redis, prefix=prefix, limit=UNREACHABLE_LIMIT, margin=0.0)
        await timings(fleet, 200)  # warm the connection and load the scripts
        fleet_spent = await timings(fleet, calls)
    finally:
        await redis.delete(*(f"{prefix}:{name}:get" for name in ("rate", "pause", "sent", "tickets")))
        await redis.aclose()
    print(f"limiter cost per call over {calls} calls")
    print(summary("fleet (Redis, 3 RTT)", fleet_spent))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.calls, arguments.redis))
