"""The figures one worker process keeps about its own work: for Prometheus and for the live stats.

:class:`WorkerMetrics` owns a ``CollectorRegistry`` of its own (never prometheus_client's global one,
so several workers in one test process stay apart) and, beside the counters, a tally of the current
interval that the live stats (``recalls.shared.telemetry.WorkerStats``) take and reset once a second.  Every
label takes values from a small fixed set: a verb, a lane, an HTTP status, a retry tier, a reason kind.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from recalls.shared.queue_depths import QueueDepth

# DVSA answers in tens of milliseconds; the limiter's waits run from nothing to about a second.
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Interval:
    """What happened since the last :meth:`WorkerMetrics.take_interval`."""

    calls: defaultdict[str, Tally[str]] = field(default_factory=lambda: defaultdict(Tally))
    outcomes: defaultdict[str, Tally[str]] = field(default_factory=lambda: defaultdict(Tally))
    retries: Tally[str] = field(default_factory=Tally)
    dead_letters: Tally[str] = field(default_factory=Tally)
    token_refreshes: int = 0


class WorkerMetrics:
    """A worker process's counters, histograms and gauges, and its tally of the current interval."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.token_expires_at: float | None = None
        self._interval = Interval()
        self._init_counters()
        self._init_gauges()

    def _init_counters(self) -> None:
        reg = self.registry
        self._calls = Counter(
            "recalls_dvsa_requests", "DVSA HTTP calls by verb and status.", ["verb", "status"], registry=reg
        )
        self._call_seconds = Histogram(
            "recalls_dvsa_request_duration_seconds",
            "Time from sending a DVSA call to its answer.",
            ["verb"],
            buckets=_CALL_BUCKETS,
            registry=reg,
        )
        self._wait_seconds = Histogram(
            "recalls_limiter_wait_seconds",
            "Time a DVSA call waited for the rate limiter's slot.",
            ["verb", "lane"],
            buckets=_WAIT_BUCKETS,
            registry=reg,
        )
        self._commands = Counter(
            "recalls_commands", "Commands finished, by outcome.", ["verb", "outcome"], registry=reg
        )
        self._retries = Counter(
            "recalls_retries", "Commands sent to a retry tier.", ["verb", "tier"], registry=reg
        )
        self._dead = Counter(
            "recalls_dead_letters", "Commands dead-lettered, by reason.", ["verb", "reason"], registry=reg
        )
        self._refreshes = Counter(
            "recalls_token_refreshes", "Fetches from DVSA's token endpoint by this process.", registry=reg
        )

    def _init_gauges(self) -> None:
        reg = self.registry
        self._expiry = Gauge(
            "recalls_token_expiry_timestamp_seconds",
            "When the token this process last used expires (Unix time).",
            registry=reg,
        )
        self._expiry.set_function(lambda: self.token_expires_at or 0.0)
        self._in_flight = Gauge(
            "recalls_commands_in_flight", "Commands being handled now by this process.", registry=reg
        )
        tasks = Gauge("recalls_asyncio_tasks", "Asyncio tasks alive in this process.", registry=reg)
        tasks.set_function(_tasks_alive)
        ProcessCollector(registry=reg)  # process_resident_memory_bytes, process_open_fds, ...
        self._queue = Gauge(
            "recalls_queue_messages",
            "Ready messages in each command queue.",
            ["queue", "verb", "lane"],
            registry=reg,
        )
        self._retry_queue = Gauge(
            "recalls_retry_queue_messages", "Messages waiting in each retry tier.", ["tier"], registry=reg
        )
        self._dead_queue = Gauge(
            "recalls_dead_letter_queue_messages", "Messages in the dead-letter queue.", registry=reg
        )
        self._redis_unreachable = Gauge(
            "recalls_redis_unreachable",
            "1 while this process's Redis calls fail and its DVSA calls are held (fleet mode).",
            registry=reg,
        )

    def count_redis_outage(self, in_outage: Callable[[], bool]) -> None:
        self._redis_unreachable.set_function(lambda: float(in_outage()))

    def dvsa_call(self, verb: str, status: str, seconds: float) -> None:
        self._calls.labels(verb, status).inc()
        self._call_seconds.labels(verb).observe(seconds)
        self._interval.calls[verb][status] += 1

    def limiter_wait(self, verb: str, lane: str, seconds: float) -> None:
        self._wait_seconds.labels(verb, lane).observe(seconds)

    def command_done(self, verb: str, outcome: str) -> None:
        self._commands.labels(verb, outcome).inc()
        self._interval.outcomes[verb][outcome] += 1

    def retried(self, verb: str, tier: str) -> None:
        self._retries.labels(verb, tier).inc()
        self._interval.retries[tier] += 1

    def dead_lettered(self, verb: str, reason: str) -> None:
        self._dead.labels(verb, reason).inc()
        self._interval.dead_letters[reason] += 1

    def token_fetched(self) -> None:
        self._refreshes.inc()
        self._interval.token_refreshes += 1

    def count_in_flight(self, count: Callable[[], int]) -> None:
        self._in_flight.set_function(lambda: float(count()))

    def queue_depths(self, depths: Iterable[QueueDepth]) -> None:
        for depth in depths:
            if depth.kind == "command":
                self._queue.labels(depth.queue, depth.verb, depth.lane).set(depth.messages)
            elif depth.kind == "retry":
                self._retry_queue.labels(depth.tier).set(depth.messages)
            else:
                self._dead_queue.set(depth.messages)

    def take_interval(self) -> Interval:
        """The tally since the last call, which starts a new one."""
        taken, self._interval = self._interval, Interval()
        return taken

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


def _tasks_alive() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # read outside the event loop: nothing to count
        return 0.0
