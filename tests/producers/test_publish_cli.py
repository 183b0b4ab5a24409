"""``recalls publish`` and ``recalls topology`` through the real console script and the real broker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aio_pika.abc import AbstractConnection

from recalls.shared.topology import Topology

pytestmark = pytest.mark.integration

QueueCount = Callable[..., Awaitable[int]]
RECALLS = str(Path(sys.executable).parent / "recalls")
VIN = "WAUZZZF49HA036784"
CREATE = ["publish", "create", "--vin", VIN, "--manufacturer-ref", "ABC1234", "--start-date", "2024-01-02"]


def recalls(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout is the test of "fails quickly": a hung connect would end the test here.
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [RECALLS, *arguments], env=env, capture_output=True, text=True, timeout=30, check=False
    )


async def test_publish_create_prints_the_message_id_and_queues_the_command(
    cli_env: dict[str, str], names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    result = recalls(*CREATE, env=cli_env)
    assert (result.returncode, result.stderr) == (0, "")
    uuid.UUID(result.stdout.strip())  # a fresh idempotency key
    assert await queue_count(names.command_queue("create"), expected=1) == 1


async def test_a_given_message_id_and_bulk_are_honoured(
    cli_env: dict[str, str], names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    arguments = f"publish fix --vin {VIN} --dvsa-ref R/2022/123 --message-id resend-1 --bulk".split()
    result = recalls(*arguments, env=cli_env)
    assert (result.returncode, result.stdout) == (0, "resend-1\n")
    async with connection.channel() as channel:
        queue = await channel.get_queue(names.command_queue("fix", "bulk"))
        message = await queue.get(no_ack=True, fail=True)
    assert message is not None
    assert message.message_id == "resend-1"
    assert await queue_count(names.command_queue("fix")) == 0


def test_an_invalid_vin_exits_2_naming_vin(cli_env: dict[str, str]) -> None:
    arguments = [*CREATE]
    arguments[arguments.index(VIN)] = "WAUZZZF49HA0367"
    result = recalls(*arguments, env=cli_env)
    assert result.returncode == 2
    assert result.stderr == "error: vin: must be 16 or 17 letters and digits\n"
    assert result.stdout == ""


def test_an_unreachable_broker_fails_quickly_without_showing_the_password(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "RECALLS_AMQP_URL": "amqp://guest:secretpw@127.0.0.1:1/"}
    for arguments in (CREATE, ["topology"]):
        result = recalls(*arguments, env=env)
        assert result.returncode == 1
        assert result.stderr.startswith("error: RabbitMQ unreachable at 127.0.0.1:1 ")
        assert result.stderr.count("\n") == 1
        assert "secretpw" not in result.stdout + result.stderr


def test_bad_settings_exit_2_with_the_settings_error(cli_env: dict[str, str]) -> None:
    result = recalls(*CREATE, env={**cli_env, "RECALLS_PREFIX": "no spaces"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid configuration:\n  RECALLS_PREFIX: ")


def test_a_broker_url_no_publisher_can_use_exits_2_naming_it_without_the_password(
    cli_env: dict[str, str],
) -> None:
    result = recalls(*CREATE, env={**cli_env, "RECALLS_AMQP_URL": "redis://guest:secretpw@127.0.0.1/"})
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid configuration:\n"
        "  RECALLS_AMQP_URL: must be an amqp:// or amqps:// URL naming a host\n"
    )


async def test_topology_declares_and_lists_every_name(
    cli_env: dict[str, str], names: Topology, connection: AbstractConnection, queue_count: QueueCount
) -> None:
    first = recalls("topology", env=cli_env)
    again = recalls("topology", env=cli_env)  # declaring is idempotent
    assert (first.returncode, again.returncode) == (0, 0)
    assert first.stdout == again.stdout
    listed = [line.split(" ", 1) for line in first.stdout.splitlines()]
    assert {kind for kind, _ in listed} == {"exchange", "queue"}
    assert all(name.startswith(f"{names.prefix}.") for _, name in listed)
    for kind, name in listed:
        if kind == "queue":
            assert await queue_count(name) == 0  # passive declare: it exists
    assert ["queue", names.command_queue("get", "bulk")] in listed
    assert ["exchange", names.commands_exchange] in listed
    # ... and nothing it declares goes unlisted (the fixtures rely on the list to clean up).
    for kind in ("queue", "exchange"):
        on_broker = {name for name in broker_names(kind) if name.startswith(f"{names.prefix}.")}
        assert on_broker == {name for listed_kind, name in listed if listed_kind == kind}


def broker_names(kind: str) -> list[str]:
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("rabbitmqctl is needed to list what the broker holds")
    listing = subprocess.run(  # noqa: S603 - fixed arguments
        [rabbitmqctl, "-q", f"list_{kind}s", "name"], capture_output=True, text=True, timeout=60, check=True
    )
    return listing.stdout.split()
