"""recalls_redis_unreachable says, while it lasts, that a fleet worker's Redis calls fail.

The alert RecallsRedisUnreachable (deploy/prometheus/rules.yml) reads it.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from recalls.shared.metrics import WorkerMetrics
from recalls.shared.redis_hold import RedisHold


def gauge(metrics: WorkerMetrics) -> float | None:
    return metrics.registry.get_sample_value("recalls_redis_unreachable")


async def test_the_gauge_is_one_while_redis_calls_fail_and_zero_again_after() -> None:
    metrics = WorkerMetrics()
    seen: list[float | None] = []

    async def wait(_seconds: float) -> None:  # the hold's pause between tries: read the gauge instead
        seen.append(gauge(metrics))

    hold = RedisHold(sleep=wait)
    metrics.count_redis_outage(lambda: hold.in_outage)
    failures = iter([RedisConnectionError("refused"), RedisConnectionError("refused")])

    async def operation() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "PONG"

    assert gauge(metrics) == 0
    assert await hold.run(operation) == "PONG"
    assert seen == [1, 1]
    assert gauge(metrics) == 0


def test_a_worker_without_redis_reports_zero() -> None:
    assert gauge(WorkerMetrics()) == 0
