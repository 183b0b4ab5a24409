"""The throughput benchmark's own arithmetic: CPU time from /proc, its verb mixes and its results' names."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench import fleet_throughput as bench
from recalls.shared.contracts import VERBS

# A /proc/<pid>/stat line whose command name holds spaces and a ")"; utime..cstime = 250, 50, 30, 20 ticks.
STAT = (
    "4242 (python3 -c (x) y) S 1 4242 4242 0 -1 4194560 31000 0 0 0 250 50 30 20 20 0 3 0 "
    "123456 300000000 20000 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0"
)


def test_the_cpu_time_of_a_stat_line_is_read_after_its_last_parenthesis() -> None:
    fields = bench.stat_fields(STAT)
    assert fields[:2] == ["S", "1"]  # state, ppid
    assert bench.stat_cpu_seconds(STAT) == pytest.approx(350 / bench.CLOCK_TICKS)


def test_the_cpu_time_of_this_process_is_read_and_grows() -> None:
    before = bench.cpu_seconds(os.getpid())
    assert before is not None
    deadline = os.times().elapsed + 0.2
    while os.times().elapsed < deadline:
        pass
    after = bench.cpu_seconds(os.getpid())
    assert after is not None and after > before


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    assert bench.cpu_seconds(2**22 + 1) is None  # above the kernel's pid_max


@pytest.mark.parametrize(
    ("text", "verbs"),
    [("create", ("create",)), ("get, delete", ("delete", "get")), ("create,fix,delete,get", VERBS)],
)
def test_verbs_are_a_subset_in_the_contracts_order(text: str, verbs: tuple[str, ...]) -> None:
    assert bench.parse_verbs(text) == verbs


@pytest.mark.parametrize("text", ["", "create,patch", ","])
def test_a_verb_outside_the_four_is_refused(text: str) -> None:
    with pytest.raises(SystemExit):
        bench.parse_options(["--verbs", text])


def test_a_backlog_holds_only_the_verbs_chosen_and_seeds_only_what_they_act_on() -> None:
    seeds, commands = bench.backlog("abcdef", 3, ("create",))
    assert seeds == [] and [c.verb for c in commands] == ["create"] * 3
    seeds, commands = bench.backlog("abcdef", 3, ("delete",))
    assert [c.vin for c in commands] == seeds and {c.verb for c in commands} == {"delete"}
    seeds, commands = bench.backlog("abcdef", 2, ("get",))
    assert [c.vin for c in commands] == seeds
    seeds, commands = bench.backlog("abcdef", 2)
    assert [c.verb for c in commands] == [*VERBS, *VERBS] and len(seeds) == 4


def test_the_report_names_the_store_never_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://bench:secret@db/ledger"
    monkeypatch.delenv("RECALLS_DATABASE_URL", raising=False)
    options = bench.parse_options(["--database-url", url, "--verbs", "fix"])
    assert options.database_url == url
    assert "secret" not in repr(options) and "secret" not in str(options.for_report())
    assert options.for_report()["verbs"] == ["fix"]
    assert bench.store_name(options.database_url) == "postgresql"
    assert bench.store_name(None) == "sqlite"
    monkeypatch.setenv("RECALLS_DATABASE_URL", url)
    assert bench.store_name(None) == "postgresql"


def named(store: str, processes: int = 1, redis: str | None = None, **options: Any) -> str:
    report = {
        "store": store,
        "options": {"processes": processes, "redis": redis, "lane": "live", "verbs": list(VERBS)} | options,
    }
    return bench.results_name(report)


def test_results_files_are_named_by_processes_mode_store_lane_and_verb_mix() -> None:
    assert named("sqlite") == "fleet_throughput-1p.json"
    assert named("postgresql", 8, "redis://r") == "fleet_throughput-8p-redis-pg.json"
    assert named("sqlite", lane="bulk", verbs=["delete"]) == "fleet_throughput-1p-bulk-delete.json"
    assert named("postgresql", verbs=["create", "get"]) == "fleet_throughput-1p-pg-create+get.json"


def test_cpu_goals_are_part_of_the_verdict() -> None:
    verbs = {"create": {"throttled_429": 0, "max_in_window": 25, "share_of_limit": 0.99}}
    report: dict[str, Any] = {
        "limit_per_verb": 25,
        "drain": {"complete": True},
        "verbs": verbs,
        "cpu": {"worker_ms_per_call": 2.9, "worker_to_sandbox": 2.4},
    }
    assert bench.goal_met(report)
    report["cpu"]["worker_to_sandbox"] = 2.6
    assert not bench.goal_met(report)
    report["cpu"] |= {"worker_to_sandbox": 2.0, "worker_ms_per_call": 3.1}
    assert not bench.goal_met(report)
    report["cpu"]["worker_ms_per_call"] = None
    assert not bench.goal_met(report)
