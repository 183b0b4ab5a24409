"""The producer side of the ``recalls`` CLI: ``publish create|fix|delete|get``, ``topology``, ``schemas``.

Failures print one ``error: ...`` line on stderr: exit 2 for input or settings the user must correct
(naming the field and the reason), exit 1 when RabbitMQ is unreachable or refuses the command.  Input
is checked before any connection is made, and no message ever shows the broker password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import msgspec
from aiormq.exceptions import AMQPError

from recalls.producers import broker
from recalls.producers.config import PublisherConfigError, publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.amqp import PublishFailed
from recalls.shared.asyncapi import ASYNCAPI_PATH, stale_asyncapi, write_asyncapi
from recalls.shared.contracts import VERBS, Command, Lane
from recalls.shared.schema_export import SCHEMA_DIR, stale_schemas, write_schemas
from recalls.shared.settings import Settings, SettingsError, load_settings
from recalls.shared.topology import LANES, Topology, TopologyError, declare, topology_of
from recalls.shared.validation import InvalidCommand, decode_command

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


class _OneLineError(click.ClickException):
    """A failure explained in one ``error: ...`` line on stderr; exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class InputError(_OneLineError):
    """The user must change the input or the settings."""

    exit_code = 2


class ServiceError(_OneLineError):
    """RabbitMQ is unreachable or refused; the same command may work later."""

    exit_code = 1


@click.group()
def publish() -> None:
    """Publish one command to the fleet; prints its message_id once RabbitMQ has confirmed it."""


def _envelope(function: _F) -> _F:
    """Options every verb takes: the VIN and what identifies and routes the message."""
    options = (
        click.option("--vin", required=True, help="16 or 17 letters and digits."),
        click.option(
            "--message-id", help="Idempotency key; give an earlier one to re-send that command safely."
        ),
        click.option("--correlation-id", help="Carried through to the outcome event."),
        click.option("--bulk", is_flag=True, help="Use the bulk lane (served after live work)."),
    )
    for option in reversed(options):
        function = option(function)
    return function


_MANUFACTURER_REF = click.option("--manufacturer-ref", help="The manufacturer's campaign reference.")
_DVSA_REF = click.option("--dvsa-ref", help="DVSA's campaign reference, such as R/2022/123.")


@publish.command()
@_envelope
@click.option("--manufacturer-ref", required=True, help="The manufacturer's campaign reference.")
@_DVSA_REF
@click.option("--start-date", required=True, metavar="YYYY-MM-DD", help="The campaign's start date.")
def create(
    *,
    vin: str,
    message_id: str | None,
    correlation_id: str | None,
    bulk: bool,
    manufacturer_ref: str,
    dvsa_ref: str | None,
    start_date: str,
) -> None:
    """Open a recall for one vehicle."""
    fields = {
        "manufacturer_campaign_reference": manufacturer_ref,
        "dvsa_campaign_reference": dvsa_ref,
        "recall_campaign_start_date": start_date,
    }
    _publish_one("create", fields, vin=vin, message_id=message_id, correlation_id=correlation_id, bulk=bulk)


@publish.command()
@_envelope
@_MANUFACTURER_REF
@_DVSA_REF
@click.option(
    "--rectification-date",
    default=lambda: dt.date.today().isoformat(),
    show_default="today",
    metavar="YYYY-MM-DD",
    help="When the vehicle was repaired.",
)
@click.option(
    "--repair-status", type=click.Choice(["FIXED", "NOT_FIXED"]), default="FIXED", show_default=True
)
def fix(
    *,
    vin: str,
    message_id: str | None,
    correlation_id: str | None,
    bulk: bool,
    manufacturer_ref: str | None,
    dvsa_ref: str | None,
    rectification_date: str,
    repair_status: str,
) -> None:
    """Mark a vehicle's recall fixed (or re-open it with --repair-status NOT_FIXED)."""
    fields = {
        "manufacturer_campaign_reference": manufacturer_ref,
        "dvsa_campaign_reference": dvsa_ref,
        "rectification_date": rectification_date,
        "repair_status": repair_status,
    }
    _publish_one("fix", fields, vin=vin, message_id=message_id, correlation_id=correlation_id, bulk=bulk)


@publish.command()
@_envelope
@_MANUFACTURER_REF
@_DVSA_REF
def delete(
    *,
    vin: str,
    message_id: str | None,
    correlation_id: str | None,
    bulk: bool,
    manufacturer_ref: str | None,
    dvsa_ref: str | None,
) -> None:
    """Delete a recall added in error (either campaign reference is required)."""
    fields = {"manufacturer_campaign_reference": manufacturer_ref, "dvsa_campaign_reference": dvsa_ref}
    _publish_one("delete", fields, vin=vin, message_id=message_id, correlation_id=correlation_id, bulk=bulk)


@publish.command()
@_envelope
@_MANUFACTURER_REF
@_DVSA_REF
def get(
    *,
    vin: str,
    message_id: str | None,
    correlation_id: str | None,
    bulk: bool,
    manufacturer_ref: str | None,
    dvsa_ref: str | None,
) -> None:
    """Read what DVSA holds for a vehicle, optionally for one campaign."""
    fields = {"manufacturer_campaign_reference": manufacturer_ref, "dvsa_campaign_reference": dvsa_ref}
    _publish_one("get", fields, vin=vin, message_id=message_id, correlation_id=correlation_id, bulk=bulk)


def _publish_one(
    verb: str,
    fields: dict[str, str | None],
    *,
    vin: str,
    message_id: str | None,
    correlation_id: str | None,
    bulk: bool,
) -> None:
    envelope = {"verb": verb, "vin": vin, "message_id": message_id, "correlation_id": correlation_id}
    command = _command({**envelope, **fields})
    settings = cli_settings()
    lane: Lane = "bulk" if bulk else "live"

    async def send() -> str:
        async with Publisher.connect(publisher_config(settings, name="recalls-cli publish")) as publisher:
            return await publisher.publish(command, lane=lane)

    click.echo(run_with_broker(send(), settings))


def _command(fields: dict[str, str | None]) -> Command:
    """The command the flags describe, checked by the same decoder the workers use."""
    # Unset flags are left out so the contract's defaults (a new message_id, ...) apply.
    given = {name: value for name, value in fields.items() if value is not None}
    try:
        return decode_command(msgspec.json.encode(given))
    except InvalidCommand as exc:
        raise InputError(str(exc)) from None


def cli_settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise InputError(str(exc)) from None


def run_with_broker(work: Coroutine[Any, Any, _T], settings: Settings) -> _T:
    """Run ``work``, turning broker failures into one-line errors without the password."""
    try:
        with _quiet_amqp_libraries():
            return asyncio.run(work)
    except PublisherConfigError as exc:  # a RECALLS_* variable the publisher cannot use
        raise InputError(str(exc)) from None
    except broker.BrokerUnreachable as exc:
        raise ServiceError(str(exc)) from None
    except PublishFailed as exc:
        raise ServiceError(f"RabbitMQ did not take the command: {exc}") from None
    except TopologyError as exc:
        raise ServiceError(str(exc)) from None
    except AMQPError as exc:
        url = settings.amqp_url.get_secret_value()
        raise ServiceError(
            f"RabbitMQ at {broker.broker_address(url)} refused: {broker.redact(str(exc), url)}"
        ) from None


@contextmanager
def _quiet_amqp_libraries() -> Iterator[None]:
    """A failure is reported once, as the command's error line; aiormq would also log it, differently."""
    loggers = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@click.command()
def topology() -> None:
    """Declare every exchange and queue for RECALLS_PREFIX (safe to repeat) and list them.

    Run it as a broker user that may configure (an administrator); the fleet's own users need not.
    """
    settings = cli_settings()
    names = topology_of(settings)

    async def declare_all() -> None:
        connection = await broker.connect(settings.amqp_url.get_secret_value(), name="recalls-cli topology")
        async with connection:
            await declare(await connection.channel(), names)

    run_with_broker(declare_all(), settings)
    for line in declared_names(names):
        click.echo(line)


def declared_names(names: Topology) -> list[str]:
    """What :func:`recalls.shared.topology.declare` creates, one ``exchange|queue <name>`` line each."""
    command_queues = [names.command_queue(verb, lane) for verb in VERBS for lane in LANES]
    retries = [names.retry_name(tier) for tier in range(len(names.retry_tiers))]
    exchanges = [names.commands_exchange, names.events_exchange, names.dead_exchange, *retries]
    queues = [*command_queues, *retries, names.dead_queue, names.ledger_queue]
    return [f"exchange {name}" for name in exchanges] + [f"queue {name}" for name in queues]


@click.command()
@click.option("--check", is_flag=True, help="Change nothing; exit 1 listing files that differ from the code.")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMA_DIR,
    show_default="shared/schemas",
    help="Where the schema files live.",
)
@click.option(
    "--asyncapi",
    type=click.Path(dir_okay=False, path_type=Path),
    default=ASYNCAPI_PATH,
    show_default="shared/asyncapi.json",
    help="Where the AsyncAPI document lives.",
)
def schemas(check: bool, directory: Path, asyncapi: Path) -> None:
    """Write the JSON Schema of every command and of the outcome event, and the AsyncAPI document."""
    where = f"{directory} and {asyncapi}"
    if check:
        stale = stale_schemas(directory) + ([asyncapi.name] if stale_asyncapi(asyncapi) else [])
        if stale:
            raise _OneLineError(f"schemas out of date in {where}: {', '.join(stale)} (run: recalls schemas)")
        click.echo(f"schemas in {where} are up to date")
        return
    changed = write_schemas(directory) + ([asyncapi.name] if write_asyncapi(asyncapi) else [])
    click.echo(f"wrote {', '.join(changed)}" if changed else f"schemas in {where} are up to date")
