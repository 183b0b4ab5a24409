"""The local limiter never lets more than the limit of one verb into any one-second window."""

from __future__ import annotations

import asyncio
import random

from shared.contracts import VERBS
from shared.ratelimit import SpacingLimiter


class FakeTime:
    """A clock that moves only when the limiter sleeps: unit tests need no real waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_a_burst_is_spaced_to_the_limit() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.015, clock=fake.clock, sleep=fake.sleep)
    sent: list[float] = []
    for _ in range(200):
        await limiter.acquire("create")
        sent.append(fake.now)
    assert max_in_any_window(sent) == 25
    rate = (len(sent) - 1) / (sent[-1] - sent[0])
    assert 24.5 < rate <= 25


async def test_verbs_have_separate_budgets() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    for verb in VERBS:
        await limiter.acquire(verb)
    assert fake.now == 1000.0  # the first call of each verb waits for nothing


async def test_concurrent_callers_queue_in_order() -> None:
    limiter = SpacingLimiter(100, margin=0.1)  # real time: 10 callers in about 0.1 s
    order: list[int] = []

    async def call(n: int) -> None:
        await limiter.acquire("get")
        order.append(n)

    await asyncio.gather(*(call(n) for n in range(10)))
    assert order == list(range(10))


async def test_late_wake_ups_never_bunch_calls_into_one_window() -> None:
    fake = FakeTime()
    rng = random.Random(3)

    async def stalling_sleep(seconds: float) -> None:
        # Every fifth wake-up comes up to 120 ms late, as on a loop stalled by a collection.
        fake.now += seconds + (rng.uniform(0, 0.12) if rng.random() < 0.2 else 0.0)

    limiter = SpacingLimiter(25, margin=0.015, clock=fake.clock, sleep=stalling_sleep)
    sent: list[float] = []
    for _ in range(500):
        await limiter.acquire("create")
        sent.append(fake.now)
    assert max_in_any_window(sent, window=1.0) <= 25  # DVSA's rule, with the margin to spare
    rate = (len(sent) - 1) / (sent[-1] - sent[0])
    assert rate > 20  # late callers wait for the window; they do not give their slots away


async def test_a_call_that_leaves_late_is_counted_from_when_it_left() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.015, clock=fake.clock, sleep=fake.sleep)
    late = await limiter.acquire("create")
    late.left_after = 0.3  # its sender was stalled for 300 ms before writing the request
    sent = [fake.now + 0.3]
    for _ in range(25):
        await limiter.acquire("create")
        sent.append(fake.now)
    # Counted from its grant instead, the 25th call after it would make 26 in one second.
    assert max_in_any_window(sent, window=1.0) <= 25


async def test_pause_holds_the_verb() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, clock=fake.clock, sleep=fake.sleep)
    await limiter.pause("fix", 3.0)
    await limiter.acquire("fix")
    assert fake.now >= 1003.0
    await limiter.acquire("get")
    assert fake.now < 1003.1  # other verbs unaffected
