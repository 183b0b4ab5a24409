"""After a change of Redis (an outage's end, a new master), calls wait out one full window.

A fake clock and sleep stand in for time (unit test): the waits are read, not slept.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from recalls.shared.redis_hold import RedisHold


class Time:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


async def test_with_no_change_nothing_waits() -> None:
    time = Time()
    hold = RedisHold(sleep=time.sleep, clock=time.clock)
    await hold.settled(1.002)
    assert (time.slept, hold.changes) == ([], 0)


async def test_the_end_of_an_outage_is_a_change_that_holds_calls_one_window() -> None:
    time = Time()
    hold = RedisHold(retry_every=0.5, sleep=time.sleep, clock=time.clock)
    failures = iter([RedisConnectionError("refused")])

    async def operation() -> str:
        if (failure := next(failures, None)) is not None:
            raise failure
        return "OK"

    assert await hold.run(operation) == "OK"
    assert hold.changes == 1
    time.now += 0.2  # a call granted 0.2 s after Redis came back
    await hold.settled(1.002)
    assert time.slept == [0.5, 0.802]


async def test_a_new_master_reported_meanwhile_moves_the_end_of_the_wait() -> None:
    time = Time()
    holds: list[RedisHold] = []

    async def sleep(seconds: float) -> None:
        time.now += seconds / 2
        if not time.slept:
            holds[0].changed()  # another failover, half-way through the first wait
        time.now += seconds / 2
        time.slept.append(round(seconds, 6))

    hold = RedisHold(sleep=sleep, clock=time.clock)
    holds.append(hold)
    hold.changed()
    await hold.settled(1.0)
    assert time.slept == [1.0, 0.5]
    assert hold.changes == 2
