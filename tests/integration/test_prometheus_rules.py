"""deploy/prometheus/rules.yml is valid, and each alert fires, and stays quiet, as rules.test.yml says.

promtool comes from Debian's prometheus package, which scripts/setup installs; without it these tests
fail, naming the package, rather than pass unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run scripts/setup (it installs Debian's prometheus package)")
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=60)  # noqa: S603


def test_the_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    result = promtool("test", "rules", str(RULES / "rules.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = (RULES / "rules.yml").read_text()
    tests = (RULES / "rules.test.yml").read_text()
    alerts = {
        line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")
    }
    assert len(alerts) == 7
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    rules = (RULES / "rules.yml").read_text()
    assert "> 300\n" in rules
    (tmp_path / "rules.yml").write_text(rules.replace("> 300\n", "> 30000000\n"))
    shutil.copy(RULES / "rules.test.yml", tmp_path / "rules.test.yml")
    result = promtool("test", "rules", str(tmp_path / "rules.test.yml"))
    assert result.returncode != 0
    assert "RecallsLiveQueueStale" in result.stdout + result.stderr
