"""compose.yaml runs a complete fleet with only commands the CLI has, and exposes nothing it should not.

No Docker engine runs here, so the file is checked against the Compose specification's JSON Schema
(vendored by check-jsonschema, read from the installed package: no network) and against the CLI.  The
trust boundaries (ports on loopback only, secrets only from .env, one broker user per role) are read off
compose.yaml and deploy/, and deploy/render.sh is run as the containers run it.  What the role users may
do on the real services: tests/integration/test_broker_permissions.py and test_redis_acl.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import jsonschema  # type: ignore[import-untyped]  # no stubs among the dev dependencies
import pytest
import yaml
from click.testing import CliRunner

from recalls.cli.main import cli
from recalls.shared.dvsa.transport import MAX_BODY_BYTES as ANSWER_BYTES
from recalls.shared.validation import MAX_BODY_BYTES as COMMAND_BYTES

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


def one_shot_services() -> set[str]:
    """Services others wait to see finish (``service_completed_successfully``), such as the topology run."""
    return {
        name
        for service in services().values()
        for name, dependency in service.get("depends_on", {}).items()
        if dependency["condition"] == "service_completed_successfully"
    }


def test_every_service_has_a_health_check_and_a_restart_policy() -> None:
    for name, service in services().items():
        if name in one_shot_services():
            assert service.get("restart") == "on-failure", name
            continue
        assert service.get("healthcheck", {}).get("test"), name
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


CLUSTER = {
    "rabbitmq-2",
    "rabbitmq-3",
    "redis-replica",
    "redis-sentinel-1",
    "redis-sentinel-2",
    "redis-sentinel-3",
}


def test_only_the_sandbox_and_the_cluster_sit_behind_profiles() -> None:
    profiled = {name: service["profiles"] for name, service in services().items() if service.get("profiles")}
    assert profiled == {"sandbox": ["sandbox"]} | {name: ["cluster"] for name in CLUSTER}


def test_every_project_service_runs_a_real_cli_command() -> None:
    runner = CliRunner()
    built = {name: service for name, service in services().items() if "build" in service}
    assert {"worker", "sandbox", "api"} <= built.keys()
    for name, service in built.items():
        result = runner.invoke(cli, [*service["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_workers_run_three_replicas_in_fleet_mode_after_their_services_migrate_and_topology() -> None:
    worker = services()["worker"]
    assert worker["deploy"]["replicas"] == 3
    # Several replicas must share one budget: fleet mode needs Redis.
    assert "RECALLS_REDIS_URL" in worker["environment"]
    conditions = {name: dep["condition"] for name, dep in worker["depends_on"].items()}
    assert conditions == {
        **dict.fromkeys(["rabbitmq", "redis", "postgres"], "service_healthy"),
        **dict.fromkeys(["migrate", "topology"], "service_completed_successfully"),
    }


def test_the_store_is_migrated_once_before_workers_and_api_start() -> None:
    migrate = services()["migrate"]
    assert migrate["command"] == ["migrate"]
    assert (
        migrate["environment"]["RECALLS_DATABASE_URL"]
        == services()["worker"]["environment"]["RECALLS_DATABASE_URL"]
    )
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # Nobody else migrates: the store's default for PostgreSQL, which no fleet service overrides.
    assert all("RECALLS_MIGRATE_ON_START" not in json.dumps(service) for service in services().values())


def test_the_api_waits_for_healthy_services_the_migration_and_the_topology() -> None:
    conditions = {name: dep["condition"] for name, dep in services()["api"]["depends_on"].items()}
    assert conditions.pop("migrate") == "service_completed_successfully"
    assert conditions.pop("topology") == "service_completed_successfully"
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

DEPLOY = ROOT / "deploy"
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)([^}]*)\}")
REQUIRED = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}$")  # ${VAR:?message}: compose refuses when unset
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|COOKIE")
# The passwords of .env each service is handed: no container gets another role's.
RABBITMQ_NODE = {
    "RABBITMQ_ADMIN_PASSWORD",
    "RABBITMQ_WORKER_PASSWORD",
    "RABBITMQ_API_PASSWORD",
    "RABBITMQ_PUBLISHER_PASSWORD",
    "RABBITMQ_ERLANG_COOKIE",
}
REDIS_NODE = {"REDIS_WORKER_PASSWORD", "REDIS_REPLICA_PASSWORD", "REDIS_SENTINEL_PASSWORD"}
PASSWORDS_BY_SERVICE = {
    "rabbitmq": RABBITMQ_NODE,
    "rabbitmq-2": RABBITMQ_NODE,
    "rabbitmq-3": RABBITMQ_NODE,
    "redis": REDIS_NODE,
    "redis-replica": REDIS_NODE,
    **{f"redis-sentinel-{n}": {"REDIS_SENTINEL_PASSWORD"} for n in (1, 2, 3)},
    "postgres": {"POSTGRES_PASSWORD"},
    "topology": {"RABBITMQ_ADMIN_PASSWORD"},
    "migrate": {"POSTGRES_PASSWORD"},
    "worker": {"RABBITMQ_WORKER_PASSWORD", "REDIS_WORKER_PASSWORD", "POSTGRES_PASSWORD"},
    "api": {"RABBITMQ_API_PASSWORD", "POSTGRES_PASSWORD"},
    "sandbox": set(),
}
BROKER_USERS = {"topology": "recalls-admin", "worker": "recalls-worker", "api": "recalls-api"}


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


def environment(service: dict[str, Any]) -> dict[str, str]:
    given = service.get("environment", {})
    assert isinstance(given, dict), "environment is a mapping, so each value can be checked"
    return {name: str(value) for name, value in given.items()}


def url_of(value: str) -> SplitResult:
    """``value`` parsed as a URL, each ``${VAR:?...}`` in it standing as ``@VAR@`` (its ``?`` is no query)."""
    return urlsplit(INTERPOLATION.sub(lambda m: f"@{m[1]}@" if m[2].startswith(":?") else m[0], value))


def broker_definitions() -> dict[str, Any]:
    loaded = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_published_port_listens_on_loopback_only() -> None:
    ports = {name: published(service) for name, service in services().items()}
    assert {port for _, port in ports["rabbitmq"]} == {"5672", "15672"}
    assert {port for _, port in ports["api"]} == {"8080"}  # behind a TLS reverse proxy
    assert {port for _, port in ports["sandbox"]} == {"8900"}  # its admin API has no authentication
    for name, found in ports.items():
        for host_ip, port in found:
            assert host_ip == "127.0.0.1", (name, port)


def test_no_guest_user_anywhere() -> None:
    for path in (ROOT / "compose.yaml", DEPLOY / "rabbitmq" / "definitions.json"):
        assert "guest" not in path.read_text().lower(), path


def test_every_secret_is_an_interpolation_that_fails_when_unset() -> None:
    for name, service in services().items():
        for variable, value in environment(service).items():
            if SECRET_NAME.search(variable):
                assert REQUIRED.match(value), (name, variable)
            password = url_of(value).password if "://" in value else None
            if password is not None:
                assert re.fullmatch(r"@[A-Z][A-Z0-9_]*@", password), (name, variable)
    text = (ROOT / "compose.yaml").read_text()
    for variable, rest in INTERPOLATION.findall(text):
        assert rest.startswith(":?"), f"${{{variable}{rest}}} must fail when unset"


def test_each_container_gets_only_the_passwords_it_needs() -> None:
    for name, service in services().items():
        text = json.dumps(service)
        assert {variable for variable, _ in INTERPOLATION.findall(text)} == PASSWORDS_BY_SERVICE[name], name
        # A whole .env handed over would give every container every password.
        assert all(Path(entry["path"]).name != ".env" for entry in service.get("env_file", [])), name


def test_env_example_lists_every_variable_compose_needs_with_no_value() -> None:
    lines = [line for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line]
    example = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    needed = {variable for variable, _ in INTERPOLATION.findall((ROOT / "compose.yaml").read_text())}
    assert example.keys() == needed
    assert set(example.values()) == {""}  # compose refuses to start until each is filled in


def test_each_fleet_role_connects_to_the_broker_as_its_own_user() -> None:
    for name, user in BROKER_USERS.items():
        assert url_of(environment(services()[name])["RECALLS_AMQP_URL"]).username == user, name
    assert url_of(environment(services()["worker"])["RECALLS_REDIS_URL"]).username == "recalls-worker"
    for name in ("worker", "api"):
        topology = services()[name]["depends_on"]["topology"]
        assert topology == {"condition": "service_completed_successfully"}, name


def test_the_broker_users_have_passwords_only_from_env() -> None:
    definitions = broker_definitions()
    rabbitmq = services()["rabbitmq"]
    users = {user["name"]: user for user in definitions["users"]}
    assert users.keys() == {"recalls-admin", "recalls-worker", "recalls-api", "recalls-publisher"}
    for name, user in users.items():
        variable = f"RABBITMQ_{name.removeprefix('recalls-').upper()}_PASSWORD"
        assert user["password_hash"] == f"@{variable}@", name  # rendered at start by deploy/render.sh
        assert "password" not in user, name
        assert REQUIRED.match(environment(rabbitmq)[variable]), name
    assert {(entry["user"], entry["vhost"]) for entry in definitions["permissions"]} == {
        (name, "/") for name in users
    }


def test_workers_trust_as_publishers_exactly_the_users_who_may_publish_commands() -> None:
    definitions = broker_definitions()
    writers = {
        entry["user"] for entry in definitions["permissions"] if re.search(entry["write"], "recalls.commands")
    }
    worker = environment(services()["worker"])
    assert set(json.loads(worker["RECALLS_PUBLISHER_USERS"])) == writers
    assert set(json.loads(worker["RECALLS_FLEET_USERS"])) <= {user["name"] for user in definitions["users"]}


def test_the_broker_loads_the_definitions_it_renders() -> None:
    rabbitmq = services()["rabbitmq"]
    _, _, _, template, rendered, *_ = rabbitmq["entrypoint"]
    mounts = dict(volume.split(":")[:2] for volume in rabbitmq["volumes"])
    assert mounts["./deploy/rabbitmq/definitions.json"] == template
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert f"load_definitions = {rendered}" in conf.splitlines()
    assert mounts["./deploy/rabbitmq/rabbitmq.conf"].startswith("/etc/rabbitmq/conf.d/")


def test_redis_asks_every_client_for_a_password() -> None:
    redis = services()["redis"]
    _, _, _, template, rendered, *_ = redis["entrypoint"]
    mounts = dict(volume.split(":")[:2] for volume in redis["volumes"])
    assert mounts["./deploy/redis/users.acl"] == template
    assert redis["command"][redis["command"].index("--aclfile") + 1] == rendered
    users = {
        line.split()[1]: line.split()[2:]
        for line in (DEPLOY / "redis" / "users.acl").read_text().splitlines()
    }
    assert users["default"] == ["off"]
    assert "@REDIS_WORKER_PASSWORD@" in users["recalls-worker"]
    assert not any(
        rule in {"nopass", "allkeys", "~*", "+@all", "allcommands"} for rule in users["recalls-worker"]
    )


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        (None, "RABBITMQ_API_PASSWORD: is not set"),
        ("short-but-fine", "RABBITMQ_API_PASSWORD: must be at least 16 characters"),
        ("a-long-one-with-an@sign", "RABBITMQ_API_PASSWORD: may hold only letters, digits, '-' and '_'"),
    ],
)
def test_rendering_refuses_a_password_it_cannot_use_and_never_shows_it(
    password: str | None, reason: str, tmp_path: Path
) -> None:
    env = {"PATH": os.environ["PATH"]}
    env |= {f"RABBITMQ_{role}_PASSWORD": "x" * 24 for role in ("ADMIN", "WORKER", "PUBLISHER")}
    if password is not None:
        env["RABBITMQ_API_PASSWORD"] = password
    template, output = DEPLOY / "rabbitmq" / "definitions.json", tmp_path / "definitions.json"
    command = ["sh", str(DEPLOY / "render.sh"), "rabbitmq", str(template), str(output)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 2
    assert reason in result.stderr
    assert password is None or password not in result.stderr + result.stdout
    assert not output.exists()


def test_the_broker_refuses_a_message_larger_than_any_the_fleet_sends() -> None:
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
    [line] = [line for line in conf if line.startswith("max_message_size")]
    most = int(line.partition("=")[2])
    # Room for the largest outcome event (a whole DVSA answer) and a command; far below 128 MiB.
    assert max(ANSWER_BYTES, COMMAND_BYTES) * 3 // 2 <= most <= 4 * ANSWER_BYTES


# --- The "cluster" profile: three RabbitMQ nodes, a Redis replica and Sentinels -------------------------


def acl_users() -> dict[str, list[str]]:
    lines = (DEPLOY / "redis" / "users.acl").read_text().splitlines()
    return {line.split()[1]: line.split()[2:] for line in lines}


def test_the_cluster_has_three_rabbitmq_nodes_that_find_each_other_by_classic_config() -> None:
    nodes = {name: service for name, service in services().items() if name.startswith("rabbitmq")}
    assert len(nodes) == 3
    names = {f"rabbit@{service['hostname']}" for service in nodes.values()}
    conf = dict(
        line.split(" = ", 1)
        for line in (DEPLOY / "rabbitmq" / "cluster.conf").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert conf.pop("cluster_formation.peer_discovery_backend") == "classic_config"
    assert set(conf.values()) == names
    assert all(key.startswith("cluster_formation.classic_config.nodes.") for key in conf)
    cookies = {environment(service)["RABBITMQ_ERLANG_COOKIE"] for service in nodes.values()}
    assert len(cookies) == 1 and REQUIRED.match(cookies.pop())  # one cookie, from .env, for all
    for name in ("rabbitmq-2", "rabbitmq-3"):
        mounts = dict(volume.split(":")[:2] for volume in nodes[name]["volumes"])
        assert mounts["./deploy/rabbitmq/cluster.conf"].startswith("/etc/rabbitmq/conf.d/")
        assert nodes[name]["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
        assert not nodes[name].get("ports"), name  # reached inside the network only
    # Each node keeps its own data.
    data = {next(v for v in node["volumes"] if v.endswith(":/var/lib/rabbitmq")) for node in nodes.values()}
    assert len(data) == 3


def test_the_redis_replica_copies_redis_as_a_user_that_may_only_replicate() -> None:
    replica = services()["redis-replica"]
    [script] = replica["entrypoint"][2:]
    assert "--replicaof redis 6379" in script
    assert "--masteruser recalls-replica" in script
    assert "--aclfile /tmp/recalls-users.acl" in script  # a promoted replica serves the workers' user
    assert set(acl_users()["recalls-replica"]) >= {"+psync", "+replconf", "-@all"}
    assert "~*" not in acl_users()["recalls-replica"]  # replication needs no key


def test_three_sentinels_watch_redis_and_two_must_agree() -> None:
    sentinels = [service for name, service in services().items() if name.startswith("redis-sentinel")]
    assert len(sentinels) == 3
    for sentinel in sentinels:
        [script] = sentinel["command"]
        assert "sentinel monitor recalls redis 6379 2" in script
        assert "sentinel auth-user recalls recalls-sentinel" in script
        assert not sentinel.get("ports")
    assert "+slaveof" in acl_users()["recalls-sentinel"] and "+@all" not in acl_users()["recalls-sentinel"]
