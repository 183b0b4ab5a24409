"""Every ``recalls`` command that prints results takes ``--json`` and prints one JSON document.

Run as an operator's script would, against the real RabbitMQ and a SQLite store, in one flow: the
topology, a publish, an import with a rejected row, its batch, a sync plan, the ledger, the
dead-letter queue, the API's keys and the schema check.  The walk over the command tree at the end
makes a command added with ``--json`` and left out here fail the test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import click
import pytest
from click.testing import CliRunner
from pamqp.common import FieldValue

from recalls.cli.main import COMMANDS, cli, load
from recalls.shared import amqp
from recalls.shared.store.migrations import MIGRATIONS
from recalls.shared.topology import Topology, delete
from tests.support.commands import vin
from tests.support.csv_files import good_row, write_csv
from tests.support.services import AMQP_URL

pytestmark = pytest.mark.integration

# reconcile needs a sweep answered by a worker and DVSA: tests/integration/test_reconcile.py parses it.
ELSEWHERE = {"reconcile"}


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    name = f"it-json-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RECALLS_PREFIX", name)
    monkeypatch.setenv("RECALLS_AMQP_URL", AMQP_URL)
    monkeypatch.setenv("RECALLS_SQLITE_PATH", str(tmp_path / "store.db"))
    yield name
    asyncio.run(remove_topology(name))


async def remove_topology(name: str) -> None:
    async with await amqp.connect(AMQP_URL, name="test cleanup") as connection:
        await delete(await connection.channel(), Topology(name))


async def dead_letter(name: str, message_id: str) -> None:
    """A dead letter as the fleet leaves one: the command's body, its reason in a header."""
    async with await amqp.connect(AMQP_URL, name="test dead letter") as connection:
        channel = await connection.channel()
        body = json.dumps({"verb": "get", "vin": vin(9), "message_id": message_id}).encode()
        headers: dict[str, FieldValue] = {"x-reason": "a test's dead letter", "x-routing-key": "get"}
        message = aio_pika.Message(body, message_id=message_id, headers=headers)
        await channel.default_exchange.publish(message, routing_key=Topology(name).dead_queue)


class Run:
    """``recalls PATH ARGS --json`` in process; each command path run is recorded."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def __call__(self, path: str, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(cli, [*path.split(), *args, "--json"])
        assert result.exit_code == code, (result.stdout, result.stderr)
        self.paths.add(path)
        return json.loads(result.stdout)


def _json_commands() -> set[str]:
    """The path of every command that takes --json, e.g. ``dlq replay``."""
    found: set[str] = set()

    def walk(path: str, command: click.Command) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(f"{path} {name}", sub)
        elif any(getattr(param, "name", None) == "as_json" for param in command.params):
            found.add(path)

    for section in COMMANDS.values():
        for name, entry in section.items():
            walk(name, load(name, entry))
    return found


def test_every_command_that_prints_results_prints_json_that_parses(prefix: str, tmp_path: Path) -> None:
    run = Run()
    migrated = run("migrate")
    assert (migrated["applied"], migrated["schema_version"]) == (
        [m.version for m in MIGRATIONS],
        MIGRATIONS[-1].version,
    )
    assert run("migrate")["applied"] == []
    declared = run("topology")
    assert {"kind": "exchange", "name": f"{prefix}.commands"} in declared["declared"]

    sent = run("publish create", "--vin", vin(1), "--manufacturer-ref", "RC-1", "--start-date", "2025-01-01")
    assert (sent["verb"], sent["vin"], sent["lane"]) == ("create", vin(1), "live")
    for verb in ("fix", "delete", "get"):
        assert run(f"publish {verb}", "--vin", vin(2), "--manufacturer-ref", "RC-1")["verb"] == verb

    rows = [good_row(3), good_row(4), ["NOT-A-VIN", "RC-1", "", "2025-01-01"]]
    imported = run("import", str(write_csv(tmp_path / "load.csv", rows)), code=3)  # a row rejected
    assert (imported["published"], imported["rejected"]) == (2, 1)
    assert Path(imported["rejected_report"]).exists()
    batch = run("batch status", imported["batch_id"])
    assert (batch["kind"], batch["total"]) == ("import", 2)

    snapshot = write_csv(tmp_path / "snapshot-2026-11-22.csv", [good_row(5)])
    planned = run("sync", str(snapshot), "--dry-run")
    assert (planned["plan"]["creates"], planned["run"]) == (1, None)

    assert run("status", vin(1)) == []  # no worker ran: the ledger holds nothing yet
    asyncio.run(dead_letter(prefix, "dead-1"))
    assert [letter["message_id"] for letter in run("dlq list")] == ["dead-1"]
    [shown] = run("dlq show", "dead-1")
    assert (shown["verb"], shown["reason"]) == ("get", "a test's dead letter")
    assert run("dlq purge", "--yes") == {"purged": 1}
    assert run("dlq replay") == {"replayed": 0, "left": []}

    key = run("api keys create", "dealer portal")
    assert key["key"].startswith("rk_") and key["webhook_secret"].startswith("whsec_")
    assert [shown["name"] for shown in run("api keys list")] == ["dealer portal"]
    assert run("api keys rotate-webhook-secret", key["id"])["id"] == key["id"]
    assert run("api keys revoke", key["id"]) == {"id": key["id"], "revoked": True}

    assert run("schemas", "--check") == {"stale": []}

    assert run.paths | ELSEWHERE == _json_commands()
