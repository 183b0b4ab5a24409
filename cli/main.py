"""Entry point of the ``recalls`` console script.

Each layer owns its commands (``recalls.sandbox.command``, ``recalls.producers.command``,
``recalls.workers.command``); this module only gathers them under one group, so ``recalls --help`` lists
everything the product can do.
"""

from __future__ import annotations

import click

from recalls.cli.demo import demo
from recalls.producers.api_command import api
from recalls.producers.bulk_command import import_, sync
from recalls.producers.command import publish, schemas, topology
from recalls.producers.reconcile_command import reconcile
from recalls.sandbox.command import simulator
from recalls.workers.command import worker
from recalls.workers.dlq_command import dlq
from recalls.workers.status_command import batch, status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recalls-fleet")
def cli() -> None:
    """The recalls fleet: keeps DVSA's Vehicle Recalls Service in step with your recall system."""


cli.add_command(simulator)
cli.add_command(publish)
cli.add_command(topology)
cli.add_command(schemas)
cli.add_command(worker)
cli.add_command(status)
cli.add_command(batch)
cli.add_command(import_)
cli.add_command(sync)
cli.add_command(demo)
cli.add_command(api)
cli.add_command(dlq)
cli.add_command(reconcile)


def main() -> None:
    cli()
