"""``recalls simulator``: run the DVSA sandbox in the foreground until SIGINT or SIGTERM.

Credentials, rate limit and address default to the fleet's own settings (``RECALLS_*``), so a sandbox and a
worker started in the same environment agree without any flags.  The secret and the API key are never
printed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, get_args

import click

from recalls.cli import errors
from recalls.sandbox.config import DEFAULT_MANUFACTURER, DEFAULT_TOKEN_TTL, SandboxConfig
from recalls.sandbox.faults import FaultSettings
from recalls.sandbox.server import RunningSandbox, serve_forever
from recalls.sandbox.state import ConflictRule

# Options whose default comes from the settings when the flag is not given.
_FROM_SETTINGS = ("host", "port", "rate_limit", "client_id", "client_secret", "scope", "api_key")

_RATE = click.FloatRange(0.0, 1.0)
_SECONDS = click.FloatRange(0.0, 86_400.0)


def _announce(running: RunningSandbox) -> None:
    click.echo(f"DVSA sandbox listening on {running.url}")
    sys.stdout.flush()  # whoever started us is waiting for this line on a pipe


def _config(options: dict[str, Any]) -> SandboxConfig:
    """The config from the flags, filling the missing ones from the settings (which may raise)."""
    values = {name: options[name] for name in _FROM_SETTINGS if options[name] is not None}
    if len(values) < len(_FROM_SETTINGS):
        base = SandboxConfig.from_settings(errors.settings(), **values)
    else:
        base = SandboxConfig(**values)
    faults = FaultSettings(
        error_rate=options["error_rate"],
        latency_ms=options["latency_ms"],
        timeout_rate=options["timeout_rate"],
        hang_seconds=options["hang_seconds"],
        drop_rate=options["drop_rate"],
        storm_seconds=options["storm_seconds"],
        token_outage_seconds=options["token_outage_seconds"],
    )
    return base.replace(
        token_ttl=options["token_ttl"],
        manufacturer=options["manufacturer"],
        seed=options["seed"],
        journal_size=options["journal_size"],
        conflict=options["conflict"],
        faults=faults,
    )


@click.command("simulator")
@click.option("--host", help="Address to listen on.  [default: RECALLS_SANDBOX_HOST]")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.  [default: RECALLS_SANDBOX_PORT]",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    help="Admitted requests per verb in any one-second window.  [default: RECALLS_RATE_LIMIT]",
)
@click.option(
    "--token-ttl",
    type=click.IntRange(min=1),
    default=DEFAULT_TOKEN_TTL,
    show_default=True,
    help="Seconds an access token stays valid.",
)
@click.option("--client-id", help="OAuth client id to accept.  [default: RECALLS_DVSA_CLIENT_ID]")
@click.option("--client-secret", help="OAuth client secret to accept.  [default: RECALLS_DVSA_CLIENT_SECRET]")
@click.option("--scope", help="OAuth scope to accept.  [default: RECALLS_DVSA_SCOPE]")
@click.option("--api-key", help="x-api-key to accept.  [default: RECALLS_DVSA_API_KEY]")
@click.option(
    "--manufacturer",
    default=DEFAULT_MANUFACTURER,
    show_default=True,
    help="Manufacturer name in DVSA's answers.",
)
@click.option("--seed", type=int, help="Seed for the fault dice, for reproducible runs.")
@click.option("--error-rate", type=_RATE, default=0.0, show_default=True, help="Share answered 500/503.")
@click.option(
    "--latency-ms",
    type=click.FloatRange(0.0, 60_000.0),
    default=0.0,
    show_default=True,
    help="Delay added to every API call.",
)
@click.option(
    "--timeout-rate",
    type=_RATE,
    default=0.0,
    show_default=True,
    help="Share applied but answered only after --hang-seconds.",
)
@click.option(
    "--hang-seconds",
    type=click.FloatRange(0.0, 3_600.0),
    default=30.0,
    show_default=True,
    help="How long a timeout fault withholds the answer.",
)
@click.option(
    "--drop-rate",
    type=_RATE,
    default=0.0,
    show_default=True,
    help="Share whose connection is closed without an answer.",
)
@click.option(
    "--storm-seconds",
    type=_SECONDS,
    default=0.0,
    show_default=True,
    help="Answer every API call 429 for this long after start.",
)
@click.option(
    "--token-outage-seconds",
    type=_SECONDS,
    default=0.0,
    show_default=True,
    help="Token endpoint answers 503 for this long after start.",
)
@click.option(
    "--journal-size",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Requests kept for /__admin/requests; older ones are forgotten.",
)
@click.option(
    "--conflict",
    type=click.Choice(get_args(ConflictRule)),
    default="campaign",
    show_default=True,
    help="What makes a create 409: the same campaign on the VIN, or any recall of the VIN (DVSA's mock).",
)
def simulator(**options: Any) -> None:
    """Run the DVSA sandbox: a stateful stand-in for DVSA's Vehicle Recalls API."""
    try:
        config = _config(options)
    except ValueError as error:
        raise errors.InputError(str(error)) from None
    try:
        asyncio.run(serve_forever(config, on_ready=_announce))
    except OSError as error:
        # Typically the port is taken; say where, without a traceback.
        raise errors.ServiceError(
            f"--host, --port: cannot listen on {config.host}:{config.port}: {error}"
        ) from None
