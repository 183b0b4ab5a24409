"""README.md's performance tables are exactly what ``bench/report.py`` renders from ``bench/results/``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import report
from recalls.shared.contracts import VERBS

README = Path(__file__).resolve().parents[2] / "README.md"
DASH = "\u2013"  # the en dash of ranges


def fleet_result(processes: int, redis: bool, rates: list[float], **extra: Any) -> dict[str, Any]:
    verbs = {
        verb: {"steady_rate_per_s": rate, "throttled_429": 0, "max_in_window": 25}
        for verb, rate in zip(extra.get("verbs", VERBS), rates, strict=True)
    }
    return {
        "options": {
            "processes": processes,
            "per_verb": 2000,
            "redis": "redis://r" if redis else None,
            **extra,
        },
        "code": {"commit": "abc1234"},
        "limit_per_verb": 25,
        "verbs": verbs,
        "latency": {"p50_ms": 5.04, "p99_ms": 12.36},
    }


def made_up_results(directory: Path) -> None:
    files = {
        "fleet_throughput-4p-redis.json": fleet_result(4, True, [24.5, 24.25, 24.75, 24.6]),
        "fleet_throughput-1p.json": fleet_result(1, False, [24.9, 24.9, 24.9, 24.9]),
        "fleet_throughput-1p-background.json": fleet_result(
            1, False, [24.0, 24.0, 24.0, 24.0], lane="background"
        ),
        "fleet_throughput-1p-bulk.json": fleet_result(1, False, [20.0, 20.0, 20.0, 20.0], lane="bulk"),
        "batch_check-500.json": {
            "vins": 500, "wall_s": 25.0, "physical_limit_s": 20.0, "ratio_to_limit": 1.25,
            "throttled_429": 2, "max_in_window": 25, "resubmit_s": 0.1, "resubmit_status": "completed",
        },
        "historic_load-1000.json": {
            "rows": 1000, "import_s": 3.31, "to_dvsa_s": 50.0, "physical_limit_s": 40.0, "ratio": 0.8,
            "throttled_429": 0, "max_in_window": 24,
        },
    }  # fmt: skip
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content))


def readme_block() -> str:
    text = README.read_text()
    return text[text.index(report.START) : text.index(report.END) + len(report.END)]


def test_readme_tables_match_the_results() -> None:
    assert readme_block() == report.render(report.load_results(report.RESULTS)), (
        "README.md's performance tables differ from bench/results/: run `.venv/bin/python -m bench.report`"
    )


def test_check_fails_when_a_figure_is_edited_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    assert report.main(["--check", "--readme", str(readme)]) == 0
    block = readme_block()
    rate = re.search(r"\d+\.\d\d/s", block)  # the first rate in the tables, whatever it is
    assert rate is not None
    edited = block.replace(rate[0], f"{float(rate[0][:-2]) + 0.1:.2f}/s", 1)
    readme.write_text(README.read_text().replace(block, edited))
    assert report.main(["--check", "--readme", str(readme)]) == 1
    assert "run `python -m bench.report`" in capsys.readouterr().err
    assert report.main(["--readme", str(readme)]) == 0
    assert readme.read_text() == README.read_text()


def test_a_made_up_results_directory_renders_these_rows(tmp_path: Path) -> None:
    made_up_results(tmp_path)
    lines = report.render(report.load_results(tmp_path)).splitlines()
    fleet = [line for line in lines if " mode" in line]
    assert fleet == [
        "| 1 worker, local mode, 2,000 per verb | not stated | all four | 24.90/s (99.6%) | 0 | 25 "
        "| 5.0 / 12.4 ms | - |",
        f"| 4 workers, fleet mode (Redis), 2,000 per verb | not stated | all four "
        f"| 24.25{DASH}24.75/s (97.0{DASH}99.0%) | 0 | 25 | 5.0 / 12.4 ms | - |",
        "| 1 worker, local mode, 2,000 per verb in the bulk lane, live commands meanwhile | not stated "
        "| all four | 20.00/s (80.0%) | 0 | 25 | live: 5.0 / 12.4 ms | - |",
        "| 1 worker, local mode, 2,000 per verb in the background lane, live commands meanwhile "
        "| not stated | all four | 24.00/s (96.0%) | 0 | 25 | live: 5.0 / 12.4 ms | - |",
    ]
    assert (
        "| batch check of 500 VINs through `recalls api` (one worker) | 25.0 s; 2 429s; at most 25 GETs in a "
        "second; re-submitted: completed from the cache in 0.10 s | 20 s; 80.0% (took 1.250 times the "
        "limit; goal ≤ 1.03) |"
    ) in lines
    assert (
        "| historic load of 1,000 rows to DVSA (`recalls import` + one worker) | 50 s from the import's "
        "start to the last outcome (the import itself: 3.3 s); 0 429s; at most 24 creates in a second "
        "| 40 s; 80.0% |"
    ) in lines
    assert not any(line.startswith("Not shown") for line in lines)


def cpu(worker_ms: float | None, sandbox_ms: float | None, ratio: float | None) -> dict[str, Any]:
    return {"worker_ms_per_call": worker_ms, "sandbox_ms_per_request": sandbox_ms, "worker_to_sandbox": ratio}


def test_a_fleet_run_with_cpu_names_its_store_and_verbs_and_gives_both_cpu_figures() -> None:
    result = fleet_result(8, True, [24.6, 24.6], verbs=["create", "delete"])
    result |= {"store": "postgresql", "cpu": cpu(2.104, 1.2, 1.7533)}
    assert report.fleet_row(result) == (
        "| 8 workers, fleet mode (Redis), 2,000 per verb | PostgreSQL | create, delete | 24.60/s (98.4%) "
        "| 0 | 25 | 5.0 / 12.4 ms | 2.10 ms / 1.20 ms (1.75x) |"
    )
    assert report.fleet_row(fleet_result(1, False, [25.0] * 4, verbs=list(VERBS)) | {"store": "sqlite"}) == (
        "| 1 worker, local mode, 2,000 per verb | SQLite | all four | 25.00/s (100.0%) | 0 | 25 "
        "| 5.0 / 12.4 ms | - |"
    )


def test_a_cpu_figure_the_run_could_not_take_is_a_question_mark() -> None:
    result = fleet_result(1, False, [25.0] * 4) | {"store": "sqlite", "cpu": cpu(None, 0.5, None)}
    assert report.fleet_row(result).endswith("| ? / 0.50 ms (?) |")


def test_the_header_states_both_cpu_goals() -> None:
    assert "(goal ≤ 3 ms, ≤ 2.5x) |" in report.FLEET_HEADER.splitlines()[0]
    assert report.FLEET_HEADER.splitlines()[0].count("|") == report.FLEET_HEADER.splitlines()[1].count("|")


def test_fleet_runs_sort_by_lane_workers_mode_store_then_verb_mix(tmp_path: Path) -> None:
    def run(processes: int, redis: bool, store: str | None, verbs: list[str], **extra: Any) -> dict[str, Any]:
        result = fleet_result(processes, redis, [24.0] * len(verbs), verbs=verbs, **extra)
        return result | ({"store": store} if store else {})

    files = {
        "fleet_throughput-1p-pg-delete.json": run(1, False, "postgresql", ["delete"]),
        "fleet_throughput-1p-create.json": run(1, False, "sqlite", ["create"]),
        "fleet_throughput-1p-pg.json": run(1, False, "postgresql", list(VERBS)),
        "fleet_throughput-1p.json": run(1, False, "sqlite", list(VERBS)),
        "fleet_throughput-1p-delete.json": run(1, False, "sqlite", ["delete"]),
        "fleet_throughput-1p-old.json": run(1, False, None, list(VERBS)),
        "fleet_throughput-8p-redis.json": run(8, True, "sqlite", list(VERBS)),
        "fleet_throughput-1p-redis.json": run(1, True, "sqlite", list(VERBS)),
        "fleet_throughput-1p-bulk.json": run(1, False, "sqlite", list(VERBS), lane="bulk"),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    rows = [line for line in report.render(report.load_results(tmp_path)).splitlines() if " mode" in line]
    assert [tuple(cell.strip() for cell in row.split("|")[1:4]) for row in rows] == [
        ("1 worker, local mode, 2,000 per verb", "SQLite", "all four"),
        ("1 worker, local mode, 2,000 per verb", "SQLite", "create"),
        ("1 worker, local mode, 2,000 per verb", "SQLite", "delete"),
        ("1 worker, local mode, 2,000 per verb", "PostgreSQL", "all four"),
        ("1 worker, local mode, 2,000 per verb", "PostgreSQL", "delete"),
        ("1 worker, local mode, 2,000 per verb", "not stated", "all four"),
        ("1 worker, fleet mode (Redis), 2,000 per verb", "SQLite", "all four"),
        ("8 workers, fleet mode (Redis), 2,000 per verb", "SQLite", "all four"),
        (
            "1 worker, local mode, 2,000 per verb in the bulk lane, live commands meanwhile",
            "SQLite",
            "all four",
        ),
    ]


def test_a_reconcile_sweep_renders_a_row_alone_and_one_beside_a_batch_check(tmp_path: Path) -> None:
    sandbox = {"throttled_429": 0, "max_in_window": 25}
    result = {
        "options": {"vins": 500},
        "sweep_alone": {"wall_s": 20.5, "exit_code": 0, "drifts": 0, "physical_limit_s": 20.0,
                        "ratio_to_limit": 1.025, **sandbox},
        "batch_alone": {"wall_s": 20.4, "physical_limit_s": 20.0, "ratio_to_limit": 1.02, **sandbox},
        "both": {
            "batch": {"wall_s": 20.6, "physical_limit_s": 20.0, "ratio_to_alone": 1.0098},
            "sweep": {"wall_s": 41.0, "exit_code": 0, "physical_limit_s": 40.0},
            **sandbox,
        },
    }  # fmt: skip
    (tmp_path / "reconcile_sweep-500.json").write_text(json.dumps(result))
    lines = report.render(report.load_results(tmp_path)).splitlines()
    assert (
        "| reconcile sweep of 500 vehicles (`recalls reconcile`, one worker, background lane) | 20.5 s from "
        "start to exit 0 (0 drifts); 0 429s; at most 25 GETs in a second | 20 s; 97.6% (took 1.025 times "
        "the limit; goal ≤ 1.03) |"
    ) in lines
    assert (
        "| the same sweep with a batch check of 500 new VINs submitted once it has begun | batch: 20.6 s "
        "beside the sweep, 20.4 s alone: 1.010 times (goal ≤ 1.03); sweep: 41.0 s to exit 0; 0 429s; "
        "at most 25 GETs in a second | the batch 20 s, 97.1%; batch and sweep 40 s, 97.6% |"
    ) in lines


def live_result(*, creates_arrived: int = 40, pairing_certain: bool = True) -> dict[str, Any]:
    latency = {"p50_ms": 6.04, "p99_ms": 11.26, "max_ms": 12.5}
    return {
        "options": {"vins": 1500, "live_seconds": 40},
        "live_beside_sweep": {
            "live": {
                "seconds": 40, "creates_throttled_429": 0, "goal_max_ms": 2000.0,
                "create": {"published": 40, "arrived": creates_arrived, "pairing_certain": pairing_certain,
                           **latency},
                "get": {"published": 40, "arrived": 40, **latency, "max_ms": 1250.0},
            },
            "sweep": {"wall_s": 62.5, "exit_code": 0, "physical_limit_s": 61.6},
            "throttled_429": 0, "max_in_window": 25,
        },
    }  # fmt: skip


def test_live_commands_beside_a_sweep_render_their_latency_and_the_sweeps_time(tmp_path: Path) -> None:
    (tmp_path / "reconcile_sweep_live-1500.json").write_text(json.dumps(live_result()))
    lines = report.render(report.load_results(tmp_path)).splitlines()
    assert (
        "| live commands beside a reconcile sweep of 1,500 vehicles (one worker): a create and a get each "
        "second for 40 s once the sweep has begun | publish → DVSA p50 / p99 / max of 40 each: create "
        "6.0 / 11.3 / 12.5 ms, get 6.0 / 11.3 / 1250.0 ms; sweep: 62.5 s to exit 0; 0 429s; at most 25 GETs "
        "in a second | live: goal < 2 s; the sweep and the live gets 61.6 s, 98.6% |"
    ) in lines


def test_creates_that_cannot_surely_be_paired_with_their_arrivals_say_so(tmp_path: Path) -> None:
    result = live_result(creates_arrived=41, pairing_certain=False)
    (tmp_path / "reconcile_sweep_live-1500.json").write_text(json.dumps(result))
    (row,) = [line for line in report.render(report.load_results(tmp_path)).splitlines() if "live" in line]
    assert "create 6.0 / 11.3 / 12.5 ms (41 arrived, paired by order, not surely), get " in row


def test_a_superseded_run_is_named_not_shown(tmp_path: Path) -> None:
    (name, commit), why = next(iter(report.SUPERSEDED.items()))
    result = fleet_result(2, True, [24.0, 24.0, 24.0, 24.0])
    (tmp_path / name).write_text(json.dumps({**result, "code": {"commit": commit}}))
    lines = report.render(report.load_results(tmp_path)).splitlines()
    assert not any("2 workers" in line for line in lines)
    assert f"Not shown: `{name}` ({why})." in lines


def test_a_result_the_report_cannot_render_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "limiter_cost.json").write_text("{}")
    with pytest.raises(ValueError, match=r"limiter_cost\.json"):
        report.render(report.load_results(tmp_path))


def fault_figures(scenario: str, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": scenario, "mode": "long", "commands_in": 3000, "applied": 2990, "already_applied": 10,
        "dead_lettered": 0, "lost": 0, "applied_twice": 0, "throttled_429": 0,
        "max_in_window": {"create": 25, "get": 24}, "faults": [{"label": "kill", "recovery_s": 1.25}],
        "worker_crashes": 0, "rss_mb_start": 110.4, "rss_mb_end": 118.6, "ok": True, "problems": [],
        "code": {"commit": "abc1234", "modified": []}, "extra": extra,
    }  # fmt: skip


def test_the_fault_block_shows_each_scenario_its_commit_and_what_the_soak_watched() -> None:
    soak = fault_figures(
        "soak",
        seconds=1800,
        steady_rate_per_verb={"create": {"per_second": 24.61, "share_of_limit": 0.9844}},
        rss_mb_baseline=[112.0, 113.5],
        rss_mb_end=[114.25, 113.5],
        tasks={"baseline": [40, 41], "end": [40, 42]},
        open_fds={"baseline": [30, 30], "end": [31, 30]},
        broker_connections={"start": 7, "end": 7},
    )
    results = {"faults-long.json": {"scenarios": {"crash": fault_figures("crash"), "soak": soak}}}
    block = report.render_faults(results)
    assert (
        "| crash (long, at abc1234) | 3,000 | 2,990 / 10 | 0 | 0 | 0 | 0 | 25 | 1: 1.2 s | 0 "
        "| 110 → 119 MB | held |"
    ) in block
    assert (
        "Soak, 30 minutes: steady rate at DVSA per verb create 24.6/s (98%) of the 25/s limit. "
        "Per worker, after the warm-up and at the end: RSS 112.0 / 113.5 → 114.2 / 113.5 MB; "
        "asyncio tasks 40 / 41 → 40 / 42; open files 30 / 30 → 31 / 30. Broker connections 7 → 7."
    ) in block


def test_a_soak_that_did_not_finish_shows_its_row_and_why_and_no_soak_line() -> None:
    unfinished = {
        **fault_figures("soak"),
        "ok": False,
        "problems": ["the scenario did not finish: TimeoutError"],
    }
    block = report.render_faults({"faults-long.json": {"scenarios": {"soak": unfinished}}})
    assert "| NOT held: the scenario did not finish: TimeoutError |" in block
    assert "Soak, " not in block


def scale_result(entries: int, *, sync_s: float, record_per_s: int) -> dict[str, Any]:
    return {
        "options": {"entries": entries, "snapshot": 1_000_000},
        "sync": {"rows": 1_000_000, "seconds": sync_s, "rss_mb_peak": 181.4},
        "status": {"in_process": {"samples": 300, "p99_ms": 1.234},
                   "whole_process": {"runs": 5, "p50_ms": 1400.2}},
        "batch": {"vins": 10_000, "slowest_s": 0.456},
        "reconcile": {"all": {"per_s": 500_000}, "since_a_day": {"per_s": 12_345},
                      "for_vins": {"per_s": 20_000}, "rss_mb_peak": 90.5},
        "recording": {"group": 40, "per_s": record_per_s},
    }  # fmt: skip


def test_ledger_scale_results_make_one_table_with_a_column_per_ledger_size(tmp_path: Path) -> None:
    for entries, sync_s, rate in ((10_000_000, 70.25, 1500), (1_000_000, 60.0, 2000)):
        result = scale_result(entries, sync_s=sync_s, record_per_s=rate)
        (tmp_path / f"ledger_scale-{entries}.json").write_text(json.dumps(result))
    lines = report.render(report.load_results(tmp_path)).splitlines()
    header = lines.index("| figure | 1M entries | 10M entries | goal |")
    assert lines[header - 2] == report.SCALE_TITLE
    assert lines[header + 2] == (
        "| `recalls sync` plan of a 1,000,000-row snapshot (`plan_sync`, as `--dry-run` prints it) "
        "| 60.0 s | 70.2 s | ≤ 120 s |"
    )
    assert "| the plan's peak RSS | 181 MB | 181 MB | < 300 MB, flat |" in lines
    assert (
        "| `recalls status VIN`: `Ledger.for_vin` p99 in-process, 300 VINs | 1.23 ms | 1.23 ms | < 50 ms |"
        in lines
    )
    assert (
        "| `recalls reconcile --since` a day ago: `Ledger.vin_pages(since=…)` | 12,345 VINs/s "
        "| 12,345 VINs/s "
        "| ≥ 250 VINs/s |"
    ) in lines
    assert (
        "| the peak RSS of a process reading all three | 90 MB | 90 MB | flat (this benchmark's own goal) |"
        in lines
    )
    assert lines[header + 11] == (
        "| recording outcome events, 40 a transaction (`Ledger.apply_within`, journal, cache) "
        "| 2,000 events/s | 1,500 events/s | ≥ 400 events/s |"
    )
    assert lines[header + 12] == report.END


def test_ledger_sizes_are_labelled_short() -> None:
    assert [report.entries_label(n) for n in (1_000_000, 10_000_000, 20_000, 12_345)] == [
        "1M",
        "10M",
        "20k",
        "12,345",
    ]
