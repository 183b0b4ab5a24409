"""compose.yaml runs only commands the CLI has, in fleet mode, with the services it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_project_service_runs_a_real_cli_command() -> None:
    runner = CliRunner()
    built = {name: s for name, s in compose()["services"].items() if "build" in s}
    assert {"worker", "sandbox", "api"} <= built.keys()
    for name, service in built.items():
        result = runner.invoke(cli, [*service["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_workers_run_in_fleet_mode_with_replicas() -> None:
    worker = compose()["services"]["worker"]
    assert worker["deploy"]["replicas"] >= 2
    # Several replicas must share one budget: fleet mode needs Redis.
    assert "RECALLS_REDIS_URL" in worker["environment"]
    assert set(worker["depends_on"]) >= {"rabbitmq", "redis"}
