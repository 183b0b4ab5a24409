"""The ``recalls`` console script: one group of every command, each imported only when it runs.

``recalls --help`` lists the commands from the table below without importing them, so it loads click
and nothing of the web, database or broker stacks.  A command whose packages the install lacks (the
base install is the publisher client) fails with one line naming the extra that brings them.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import click

from recalls.cli.errors import InputError


@dataclass(frozen=True)
class _Entry:
    target: str  # module:attribute of the click command
    summary: str  # the first line of its help, pinned to it by a test
    extra: str  # what brings its packages: "base" (the plain install), or an extra of recalls-fleet


COMMANDS: dict[str, dict[str, _Entry]] = {
    "Publish": {
        "publish": _Entry(
            "recalls.cli.publish:publish",
            "Publish one command to the fleet; prints its message_id once RabbitMQ has confirmed it.",
            "base",
        ),
        "import": _Entry(
            "recalls.cli.bulk:import_",
            "Publish FILE's rows (DVSA's SFTP CSV format) as creates in the bulk lane: the historic load.",
            "worker",
        ),
        "sync": _Entry(
            "recalls.cli.bulk:sync",
            "Bring DVSA in line with FILE, a full daily snapshot: create new rows, fix recalls it lacks.",
            "worker",
        ),
    },
    "Run": {
        "worker": _Entry(
            "recalls.cli.worker:worker",
            "Consume recall commands from RabbitMQ and apply them to DVSA.",
            "worker",
        ),
        "api": _Entry(
            "recalls.cli.api:api",
            "Serve the CarsXE-shaped batch API (POST /v1/recalls-batch/submit, status, results, download).",
            "api",
        ),
    },
    "Operate": {
        "status": _Entry(
            "recalls.cli.status:status", "Show what the ledger holds for one vehicle.", "worker"
        ),
        "batch": _Entry("recalls.cli.status:batch", "Batch jobs: imports, syncs and batch checks.", "worker"),
        "reconcile": _Entry(
            "recalls.cli.reconcile:reconcile",
            "Check every vehicle of the ledger at DVSA and report where they differ (exit 3 on drift).",
            "worker",
        ),
        "dlq": _Entry(
            "recalls.cli.dlq:dlq",
            "The dead-letter queue: list, show, replay and purge what could not be applied.",
            "worker",
        ),
    },
    "Set up": {
        "migrate": _Entry(
            "recalls.cli.migrate:migrate",
            "Bring the store's schema up to this version (safe to repeat; run it before a rollout).",
            "worker",
        ),
        "topology": _Entry(
            "recalls.cli.topology:topology",
            "Declare every exchange and queue for RECALLS_PREFIX (safe to repeat) and list them.",
            "base",
        ),
        "schemas": _Entry(
            "recalls.cli.schemas:schemas",
            "Write the JSON Schema of every command and of the outcome event, and the AsyncAPI document.",
            "base",
        ),
    },
    "Try": {
        "simulator": _Entry(
            "recalls.cli.simulator:simulator",
            "Run the DVSA sandbox: a stateful stand-in for DVSA's Vehicle Recalls API.",
            "sandbox",
        ),
        "demo": _Entry(
            "recalls.cli.demo:demo",
            "Show the fleet doing its job end to end against a local DVSA sandbox.",
            "all",
        ),
    },
}
_ENTRIES = {name: entry for section in COMMANDS.values() for name, entry in section.items()}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_ENTRIES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _ENTRIES.get(cmd_name)
        return None if entry is None else load(cmd_name, entry)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for heading, section in COMMANDS.items():
            with formatter.section(heading):
                formatter.write_dl([(name, entry.summary) for name, entry in section.items()])


def load(name: str, entry: _Entry) -> click.Command:
    """The command ``entry`` names, or an :class:`InputError` naming the extra its packages come with."""
    module, attribute = entry.target.split(":")
    try:
        command: click.Command = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "recalls":
            raise
        fix = "recalls-fleet" if entry.extra == "base" else f"'recalls-fleet[{entry.extra}]'"
        raise InputError(
            f"`recalls {name}` needs {exc.name}, which this install lacks: pip install {fix}"
        ) from None
    return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recalls-fleet")
def cli() -> None:
    """The recalls fleet: keeps DVSA's Vehicle Recalls Service in step with your recall system.

    Exit codes: 0 done; 1 a service failed (RabbitMQ, the store, DVSA); 2 bad input or settings;
    3 done with findings (rows rejected, drift found); 130 stopped by Ctrl-C (run it again to go on).
    """


def recalls_command(*args: str) -> list[str]:
    """The command line that runs ``recalls ARGS`` in a child process with this interpreter."""
    return [sys.executable, "-m", "recalls", *args]


def main() -> None:
    cli()
