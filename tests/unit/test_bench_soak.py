"""The soak's judgement of handles: a burst of pooled connections is not a leak; a steady climb is."""

from __future__ import annotations

from bench.faults.scenarios import soak


def readings(fds: list[float]) -> list[tuple[float, list[dict[str, float]]]]:
    """One worker read every 10 s, with these open file descriptors and 20 tasks."""
    return [(10.0 * i, [{"fds": n, "tasks": 20.0}]) for i, n in enumerate(fds)]


def judged(fds: list[float]) -> list[str]:
    return soak.growth(
        {
            "rss_mb_baseline": [100.0],
            "rss_mb_end": [100.0],
            "tasks": soak._medians(readings(fds), "tasks", warm=60, window=120),
            "open_fds": soak._medians(readings(fds), "fds", warm=60, window=120),
        }
    )


def test_a_burst_of_connections_at_the_last_reading_is_not_growth() -> None:
    steady = [32.0] * 180
    steady[-1] = 52.0  # the last reading caught a burst's pooled connections before they idled out
    assert judged(steady) == []


def test_descriptors_that_climb_through_the_run_are_growth() -> None:
    climbing = [32.0 + i // 20 for i in range(180)]  # one more every 200 s
    assert judged(climbing) == ["worker 0 open_fds grew from 32 to 40"]
