"""``recalls topology``: declare the fleet's exchanges and queues under ``RECALLS_PREFIX``, and list them."""

from __future__ import annotations

import click

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.output import json_option, print_json
from recalls.shared import amqp
from recalls.shared.topology import declare, declared_names, topology_of


@click.command()
@json_option
def topology(as_json: bool) -> None:
    """Declare every exchange and queue for RECALLS_PREFIX (safe to repeat) and list them.

    Run it as a broker user that may configure (an administrator); the fleet's own users need not.
    """
    settings = errors.settings()
    names = topology_of(settings)

    async def declare_all() -> None:
        connection = await amqp.connect(settings.amqp_url.get_secret_value(), name="recalls-cli topology")
        async with connection:
            await declare(await connection.channel(), names)

    run_with_broker(declare_all(), settings)
    lines = [line.split(" ", 1) for line in declared_names(names)]
    if as_json:
        print_json({"prefix": settings.prefix, "declared": [{"kind": k, "name": n} for k, n in lines]})
        return
    for kind, name in lines:
        click.echo(f"{kind} {name}")
