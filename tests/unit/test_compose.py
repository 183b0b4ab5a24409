"""compose.yaml is a valid Compose file that runs a complete fleet with only commands the CLI has.

No Docker engine runs here, so the file is checked against the Compose specification's JSON Schema
(vendored by check-jsonschema, read from the installed package: no network) and against the CLI.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs among the dev dependencies
import pytest
import yaml
from click.testing import CliRunner

from cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def compose_schema() -> dict[str, Any]:
    schema = json.loads(files(SCHEMA_PACKAGE).joinpath("compose-spec.json").read_text())
    assert isinstance(schema, dict)
    return schema


def schema_errors(document: object) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_catches_a_mistake() -> None:
    broken = compose()
    broken["services"]["worker"]["replicas"] = 3  # belongs under deploy:
    assert schema_errors(broken) != []


def test_the_whole_fleet_is_there() -> None:
    assert {"rabbitmq", "redis", "postgres", "worker", "api", "sandbox"} <= services().keys()
    rabbitmq = services()["rabbitmq"]
    assert rabbitmq["image"].endswith("-management")
    assert any(str(port).endswith(":15672") for port in rabbitmq["ports"])


def test_every_service_has_a_health_check_and_a_restart_policy() -> None:
    for name, service in services().items():
        assert service.get("healthcheck", {}).get("test"), name
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_only_the_sandbox_sits_behind_a_profile() -> None:
    profiled = {name for name, service in services().items() if service.get("profiles")}
    assert profiled == {"sandbox"}


def test_every_project_service_runs_a_real_cli_command() -> None:
    runner = CliRunner()
    built = {name: service for name, service in services().items() if "build" in service}
    assert {"worker", "sandbox", "api"} <= built.keys()
    for name, service in built.items():
        result = runner.invoke(cli, [*service["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_workers_run_three_replicas_in_fleet_mode_after_their_services_are_healthy() -> None:
    worker = services()["worker"]
    assert worker["deploy"]["replicas"] == 3
    # Several replicas must share one budget: fleet mode needs Redis.
    assert "RECALLS_REDIS_URL" in worker["environment"]
    conditions = {name: dep["condition"] for name, dep in worker["depends_on"].items()}
    assert conditions == dict.fromkeys(["rabbitmq", "redis", "postgres"], "service_healthy")


def test_the_api_waits_for_healthy_services() -> None:
    conditions = {name: dep["condition"] for name, dep in services()["api"]["depends_on"].items()}
    assert conditions and set(conditions.values()) == {"service_healthy"}


@pytest.mark.parametrize(
    ("service", "url"),
    [("worker", "http://127.0.0.1:9464/healthz"), ("api", "http://127.0.0.1:8080/healthz")],
)
def test_fleet_health_checks_ask_the_liveness_endpoint(service: str, url: str) -> None:
    test = services()[service]["healthcheck"]["test"]
    # The image has Python but no curl.
    assert test[:3] == ["CMD", "python", "-c"]
    assert url in test[3]


def test_workers_serve_metrics_on_every_interface_of_their_container() -> None:
    environment = services()["worker"]["environment"]
    # Inside a container "every interface" is the compose network, where Prometheus and Docker look.
    assert environment["RECALLS_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    assert environment["RECALLS_METRICS_PORT"] == "9464"


def test_the_image_runs_as_an_unprivileged_user_and_copies_no_secrets() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")  # join continued lines
    lines = [line.split() for line in text.splitlines() if line.strip()]
    instructions = [words for words in lines if not words[0].startswith("#")]
    users = [words[1] for words in instructions if words[0] == "USER"]
    assert users and users[-1] != "root"
    copied = [source for words in instructions if words[0] == "COPY" for source in words[1:-1]]
    assert not any(".env" in source or source == "." for source in copied), copied
    assert not any(words[0] in {"ENV", "ARG"} and "RECALLS_" in " ".join(words) for words in instructions)


# --- Trust boundaries: what the deployment exposes, and where its secrets come from -------------------


def published(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(host IP or None, published port) of each of a service's ports, short or long syntax."""
    found: list[tuple[str | None, str]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip"), str(port.get("published"))))
            continue
        parts = str(port).rsplit(":", 2)
        found.append((parts[0], parts[1]) if len(parts) == 3 else (None, parts[0]))
    return found


def test_every_published_port_listens_on_loopback_only() -> None:
    ports = {name: published(service) for name, service in services().items()}
    assert {port for _, port in ports["rabbitmq"]} == {"5672", "15672"}
    assert {port for _, port in ports["api"]} == {"8080"}  # behind a TLS reverse proxy
    assert {port for _, port in ports["sandbox"]} == {"8900"}  # its admin API has no authentication
    for name, found in ports.items():
        for host_ip, port in found:
            assert host_ip == "127.0.0.1", (name, port)
