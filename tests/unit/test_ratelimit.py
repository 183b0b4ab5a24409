"""The local limiter never lets more than the limit of one verb into any one-second window."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from recalls.shared.contracts import VERBS, Lane, Verb
from recalls.shared.ratelimit import SpacingLimiter
from tests.support.windows import max_in_any_window


class FakeTime:
    """A clock that moves only when the limiter sleeps: unit tests need no real waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)  # let other callers run, as a real sleep would


async def call(limiter: SpacingLimiter, fake: FakeTime, verb: Verb = "create") -> float:
    """One call answered at once; returns when it was let go."""
    permit = await limiter.acquire(verb)
    await limiter.answered(permit)
    return fake.now


async def test_a_burst_is_spaced_to_the_limit() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.015, clock=fake.clock, sleep=fake.sleep)
    sent = [await call(limiter, fake) for _ in range(200)]
    assert max_in_any_window(sent) == 25
    rate = (len(sent) - 1) / (sent[-1] - sent[0])
    assert 24.5 < rate <= 25


async def test_verbs_have_separate_budgets() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    for verb in VERBS:
        await call(limiter, fake, verb)
    assert fake.now == 1000.0  # the first call of each verb waits for nothing


async def test_concurrent_callers_queue_in_order() -> None:
    limiter = SpacingLimiter(100, margin=0.1)  # real time: 10 callers in about 0.1 s
    order: list[int] = []

    async def call_in_turn(n: int) -> None:
        await limiter.answered(await limiter.acquire("get"))
        order.append(n)

    await asyncio.gather(*(call_in_turn(n) for n in range(10)))
    assert order == list(range(10))


async def test_late_wake_ups_never_bunch_calls_into_one_window() -> None:
    fake = FakeTime()
    rng = random.Random(3)

    async def stalling_sleep(seconds: float) -> None:
        # Every fifth wake-up comes up to 120 ms late, as on a loop stalled by a collection.
        fake.now += seconds + (rng.uniform(0, 0.12) if rng.random() < 0.2 else 0.0)

    limiter = SpacingLimiter(25, margin=0.015, clock=fake.clock, sleep=stalling_sleep)
    sent = [await call(limiter, fake) for _ in range(500)]
    assert max_in_any_window(sent, window=1.0) <= 25  # DVSA's rule, with the margin to spare
    rate = (len(sent) - 1) / (sent[-1] - sent[0])
    assert rate > 20  # late callers wait for the window; they do not give their slots away


async def test_calls_arriving_anywhere_before_their_answer_never_crowd_a_window() -> None:
    # A request reaches DVSA at some moment between its grant and its answer: which one, the sender
    # cannot know (a stalled loop, a slow network).  The worst case: slow calls arrive just before
    # their answer, quick ones at once.  Even then no second holds 26.
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    arrivals: list[float] = []
    for n in range(600):
        permit = await limiter.acquire("create")
        latency = 0.25 if n % 30 == 0 else 0.002
        arrivals.append(fake.now + (latency if latency > 0.1 else 0.0))
        fake.now += latency
        await limiter.answered(permit)
    assert max_in_any_window(arrivals, window=1.0) <= 25


async def test_calls_in_flight_hold_their_place_until_answered() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    in_flight = [await limiter.acquire("fix") for _ in range(25)]
    fake.now += 5.0  # long after their grants, but none has been answered
    next_call = asyncio.create_task(limiter.acquire("fix"))
    for _ in range(100):
        await asyncio.sleep(0)
    assert not next_call.done()
    answered_at = fake.now
    for permit in in_flight:
        await limiter.answered(permit)
    await next_call
    assert fake.now >= answered_at + 1.0


async def test_spacing_widens_with_the_time_calls_take() -> None:
    # Calls answered 200 ms after their grant: spaced a window apart, every other caller would wake to
    # a closed gate; spaced by a window plus that time, they find it open.
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(100):
        permit = await limiter.acquire("get")
        fake.now += 0.2
        await limiter.answered(permit)
    assert abs(limiter.interval("get") - 1.2 / 25) < 0.001
    assert limiter.interval("create") == 1.0 / 25


class VirtualTime:
    """A clock for many concurrent sleepers: it jumps to the earliest wake-up once all are asleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), wake))
        await wake

    async def run(self, *work: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.create_task(job) for job in work]
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every task that can run reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers:
                at, _, wake = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                wake.set_result(None)
        await asyncio.gather(*tasks)


@dataclass
class Calls:
    """Creates made through one limiter on a virtual clock, each 4 ms long, and when each was let go."""

    limiter: SpacingLimiter
    time: VirtualTime
    granted: list[tuple[Lane, float]] = field(default_factory=list)
    live_asked: float | None = None

    def backlog(self, lane: Lane, count: int, callers: int = 5) -> list[Coroutine[Any, Any, None]]:
        """``count`` calls of ``lane``, taken in turn by ``callers`` tasks (a worker's deliveries)."""
        work = iter(range(count))
        return [self._caller(lane, work) for _ in range(callers)]

    async def _caller(self, lane: Lane, work: Iterator[int]) -> None:
        for _ in work:
            permit = await self.limiter.acquire("create", lane)
            self.granted.append((lane, self.time.now))
            await self.time.sleep(0.004)  # the call
            await self.limiter.answered(permit)

    async def one_live_call(self, after: float) -> None:
        """A live call asked ``after`` seconds (noted in ``live_asked``)."""
        await self.time.sleep(after)
        self.live_asked = self.time.now
        await self._caller("live", iter(range(1)))

    def live_wait(self) -> float:
        """How long the live call waited for its slot."""
        assert self.live_asked is not None
        return next(at for lane, at in self.granted if lane == "live") - self.live_asked

    def times(self) -> list[float]:
        return [at for _, at in self.granted]


def calls_at_25_per_s(late: float = 0.0) -> Calls:
    """Calls through a limiter of 25/s whose wake-ups come up to ``late`` seconds late, as on a busy loop."""
    time = VirtualTime()
    rng = random.Random(5)

    async def late_sleep(seconds: float) -> None:
        await time.sleep(seconds + rng.uniform(0, late))

    return Calls(SpacingLimiter(25, margin=0.0, clock=time.clock, sleep=late_sleep), time)


async def test_live_calls_go_ahead_of_a_bulk_backlog() -> None:
    calls = calls_at_25_per_s()
    # The live call comes when the bulk backlog is in full flow.
    await calls.time.run(*calls.backlog("bulk", 400, callers=10), calls.one_live_call(after=2.0))
    # Behind at most the bulk calls already booked (two slots), not behind the 350 still waiting.
    assert calls.live_wait() <= 3 / 25
    times = calls.times()
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate > 24.5  # bulk work takes every slot live work leaves
    assert max_in_any_window(times) <= 25


async def test_background_calls_take_only_the_slots_bulk_work_leaves() -> None:
    # Wake-ups up to 15 ms late, less than half an interval (20 ms): a bulk caller still re-books first.
    calls = calls_at_25_per_s(late=0.015)
    # 200 bulk and 200 background calls queued at once, five callers each (five workers' deliveries).
    await calls.time.run(*calls.backlog("bulk", 200), *calls.backlog("background", 200))
    assert [lane for lane, _ in calls.granted] == ["bulk"] * 200 + ["background"] * 200
    times = calls.times()
    for part in (times[:200], times[200:]):
        assert (len(part) - 1) / (part[-1] - part[0]) > 24.5  # each at the full rate
    # No slot lost at the hand-over: from five calls before it to five after, ten intervals, not eleven.
    assert times[205] - times[195] < 10.5 * calls.limiter.interval("create")
    assert max_in_any_window(times) <= 25


async def test_background_work_alone_loses_no_slot_to_late_wake_ups() -> None:
    calls = calls_at_25_per_s(late=0.015)  # less than half an interval (20 ms)
    await calls.time.run(*calls.backlog("background", 200))
    times = calls.times()
    # Each slot was booked before the one ahead of it came, so the schedule kept the full spacing: 199
    # intervals from the first call to the last, plus how late the last one's wake-ups were (at the
    # slot, then at the gate).  Booking only once the last slot had come would lose 7.5 ms a call.
    assert (times[-1] - times[0]) / calls.limiter.interval("create") < 199 + 1.5
    assert max_in_any_window(times) <= 25


async def test_live_calls_go_ahead_of_background_work() -> None:
    calls = calls_at_25_per_s()
    await calls.time.run(*calls.backlog("background", 200), calls.one_live_call(after=2.0))
    # Behind at most the background call booked half an interval ahead, after the one at its slot now.
    assert calls.live_wait() <= 1.5 * calls.limiter.interval("create") + 1e-6


async def test_pause_holds_the_verb() -> None:
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    await limiter.pause("fix", 3.0)
    await call(limiter, fake, "fix")
    assert fake.now >= 1003.0
    await call(limiter, fake, "get")
    assert fake.now < 1003.1  # other verbs unaffected


async def test_work_done_when_the_slot_comes_is_not_the_calls_time() -> None:
    """A last look taken in ``ready`` (here 30 ms each) does not widen the spacing: the calls still
    go at the limit, and each look comes after its slot and before its grant."""
    fake = FakeTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    looks: list[float] = []

    async def look() -> None:
        looks.append(fake.now)
        await fake.sleep(0.03)

    sent = []
    for _ in range(100):
        permit = await limiter.acquire("create", ready=look)
        sent.append(fake.now)
        await limiter.answered(permit)
    assert len(looks) == 100 and all(look < go for look, go in zip(looks, sent, strict=True))
    assert max_in_any_window(sent) == 25
    assert (len(sent) - 1) / (sent[-1] - sent[0]) > 24.9


async def test_work_that_refuses_the_call_takes_no_place_at_the_gate() -> None:
    """Withdrawn in ``ready``, a call spends its slot but is never let go: with a limit of 1, a place
    held at the gate and never answered would shut the verb for good."""
    fake = FakeTime()
    limiter = SpacingLimiter(1, margin=0.0, clock=fake.clock, sleep=fake.sleep)

    async def withdraw() -> None:
        raise LookupError("withdrawn")

    with pytest.raises(LookupError):
        await limiter.acquire("delete", ready=withdraw)
    started = fake.now
    async with asyncio.timeout(1):  # fake time moves at once: only a shut gate takes real time
        await limiter.acquire("delete")
    assert fake.now - started == pytest.approx(1.0)  # the next slot, a window on


async def test_a_spell_of_slow_calls_does_not_space_the_seconds_after_it() -> None:
    # 200 callers join over two seconds (workers starting, each with its prefetch) while the first 50
    # calls take 200 ms (eight processes starting on two cores); the rest take 4 ms.  A slot is spaced
    # by the call time measured when it is booked: booked all at once, the slow spell would space the
    # next eight seconds; a process books only a few ahead, so the full pace is back within seconds.
    time = VirtualTime()
    limiter = SpacingLimiter(25, margin=0.0, clock=time.clock, sleep=time.sleep)
    granted: list[float] = []
    work = iter(range(800))

    async def caller(joins: float) -> None:
        await time.sleep(joins)
        for n in work:
            permit = await limiter.acquire("create")
            granted.append(time.now)
            await time.sleep(0.2 if n < 50 else 0.004)
            await limiter.answered(permit)

    await time.run(*(caller(i * 0.01) for i in range(200)))
    spell_over = granted[50]
    after = [at for at in granted if spell_over + 3 <= at < spell_over + 6]
    assert (len(after) - 1) / (after[-1] - after[0]) > 24.5
    assert max_in_any_window(granted) <= 25
