"""``recalls publish create|fix|delete|get``: publish one command; prints its message_id once confirmed.

Input is checked by the workers' own decoder before any connection is made, so a refused field is an
exit 2 that names it; a broker that is down or refuses is an exit 1 (:mod:`recalls.cli.errors`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.output import json_option, print_json
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.contracts import Command, Lane
from recalls.shared.validation import InvalidCommand, decode_command

_F = TypeVar("_F", bound=Callable[..., Any])


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
        json_option,
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
    as_json: bool,
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
    _publish_one(
        "create",
        fields,
        vin=vin,
        message_id=message_id,
        correlation_id=correlation_id,
        bulk=bulk,
        as_json=as_json,
    )


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
    as_json: bool,
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
    _publish_one(
        "fix",
        fields,
        vin=vin,
        message_id=message_id,
        correlation_id=correlation_id,
        bulk=bulk,
        as_json=as_json,
    )


def _targeted(verb: str, summary: str) -> click.Command:
    """``publish delete`` or ``publish get``: the same flags, either campaign reference."""

    @publish.command(name=verb, help=summary)
    @_envelope
    @_MANUFACTURER_REF
    @_DVSA_REF
    def command(*, manufacturer_ref: str | None, dvsa_ref: str | None, **envelope: Any) -> None:
        fields = {"manufacturer_campaign_reference": manufacturer_ref, "dvsa_campaign_reference": dvsa_ref}
        _publish_one(verb, fields, **envelope)

    return command


delete = _targeted("delete", "Delete a recall added in error (either campaign reference is required).")
get = _targeted("get", "Read what DVSA holds for a vehicle, optionally for one campaign.")


def _publish_one(
    verb: str,
    fields: dict[str, str | None],
    *,
    vin: str,
    message_id: str | None,
    correlation_id: str | None,
    bulk: bool,
    as_json: bool,
) -> None:
    envelope = {"verb": verb, "vin": vin, "message_id": message_id, "correlation_id": correlation_id}
    command = _command({**envelope, **fields})
    settings = errors.settings()
    lane: Lane = "bulk" if bulk else "live"

    async def send() -> str:
        async with Publisher.connect(publisher_config(settings, name="recalls-cli publish")) as publisher:
            return await publisher.publish(command, lane=lane)

    message_id = run_with_broker(send(), settings)
    if as_json:
        print_json({"message_id": message_id, "verb": verb, "vin": command.vin, "lane": lane})
    else:
        click.echo(message_id)


def _command(fields: dict[str, str | None]) -> Command:
    """The command the flags describe, checked by the same decoder the workers use."""
    # Unset flags are left out so the contract's defaults (a new message_id, ...) apply.
    given = {name: value for name, value in fields.items() if value is not None}
    try:
        return decode_command(msgspec.json.encode(given))
    except InvalidCommand as exc:
        raise errors.InputError(str(exc)) from None
