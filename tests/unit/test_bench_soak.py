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


def test_pools_that_fill_in_the_first_quarter_and_stay_full_are_not_growth() -> None:
    run = 1800
    filling = [30.0] * 30 + [34.0] * 150  # the pools' connections opened by minute five, then flat
    extra = {
        "rss_mb_baseline": [100.0],
        "rss_mb_end": [100.0],
        "tasks": soak._medians(readings(filling), "tasks", warm=soak.settled(run), window=120),
        "open_fds": soak._medians(readings(filling), "fds", warm=soak.settled(run), window=120),
    }
    assert soak.settled(run) == 450 and soak.growth(extra) == []
    assert judged(filling) == ["worker 0 open_fds grew from 30 to 34"]  # judged from minute one, it would


def test_tasks_are_counted_net_of_the_three_each_command_in_hand_holds() -> None:
    filling = {"recalls_asyncio_tasks": 3 * 112 + 15, "recalls_commands_in_flight": 112}
    full = {"recalls_asyncio_tasks": 3 * 128 + 15, "recalls_commands_in_flight": 128}
    assert soak.tasks_beside_deliveries(filling) == soak.tasks_beside_deliveries(full) == 15
