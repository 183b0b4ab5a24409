"""``recalls dlq list|show|replay|purge``: the dead-letter queue for operators.

A missing dead-letter queue or an unreachable RabbitMQ is an exit 1; an unknown message id an exit 2;
a replay that left some dead letters where they were an exit 3, naming each and why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import msgspec
from rich.table import Table

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.output import json_option, print_json, printable, when
from recalls.cli.tables import cell, console, table
from recalls.ops.dead_letters import DeadLetter, DeadLetterQueue, Filter
from recalls.shared import amqp
from recalls.shared.contracts import VERBS
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology

_T = TypeVar("_T")


def _with_queue(settings: Settings, work: Callable[[DeadLetterQueue], Awaitable[_T]]) -> _T:
    """Run ``work`` against the dead-letter queue."""

    async def run() -> _T:
        connection = await amqp.connect(settings.amqp_url.get_secret_value(), name="recalls dlq")
        async with connection:
            return await work(DeadLetterQueue(connection, Topology(settings.prefix)))

    return run_with_broker(run(), settings)


def _filters(func: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--verb", type=click.Choice(VERBS), help="Only dead letters of this verb."),
        click.option("--reason", help="Only dead letters whose reason contains this (any case)."),
        click.option(
            "--older-than",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="Only those dead-lettered at least this long ago.",
        ),
        click.option(
            "--newer-than",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="Only those dead-lettered at most this long ago.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _selection(
    verb: str | None, reason: str | None, older_than: float | None, newer_than: float | None, **rest: object
) -> Filter:
    message_id = rest.get("message_id")
    return Filter(
        verb=verb,
        reason=reason,
        older_than=older_than,
        newer_than=newer_than,
        message_id=message_id if isinstance(message_id, str) else None,
    )


def _letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


@click.group()
def dlq() -> None:
    """The dead-letter queue: list, show, replay and purge what could not be applied."""


@dlq.command(name="list")
@_filters
@json_option
def list_(
    verb: str | None, reason: str | None, older_than: float | None, newer_than: float | None, as_json: bool
) -> None:
    """List the dead letters (all, or those matching every filter given)."""
    selection = _selection(verb, reason, older_than, newer_than)
    letters = _with_queue(errors.settings(), lambda queue: queue.list(selection))
    if as_json:
        print_json([letter.summary() for letter in letters])
        return
    if not letters:
        click.echo("No dead letters match.")
        return
    shown = table(
        f"Dead letters ({len(letters)})", ("message id", "verb", "lane", "dead at", "attempts", "reason")
    )
    for letter in letters:
        shown.add_row(
            cell(letter.message_id),
            cell(letter.verb),
            cell(letter.lane),
            when(letter.dead_at),
            str(letter.attempts),
            cell(letter.reason),
        )
    console().print(shown)


@dlq.command()
@click.argument("message_id")
@json_option
def show(message_id: str, as_json: bool) -> None:
    """Show the dead letters with MESSAGE_ID: headers, reason and body."""
    letters = _with_queue(errors.settings(), lambda queue: queue.list(Filter(message_id=message_id)))
    if not letters:
        raise errors.InputError(f"MESSAGE_ID: no dead letter with message id {message_id!r}")
    if as_json:
        print_json([letter.details() for letter in letters])
        return
    out = console()
    for letter in letters:
        out.print(_details_table(letter))
        click.echo("body:")
        click.echo(printable(letter.pretty_body()))


def _details_table(letter: DeadLetter) -> Table:
    shown = table(cell(f"Dead letter {letter.message_id}"), ("field", "value"), show_header=False)
    rows = {
        "verb": letter.verb,
        "lane": letter.lane,
        "routing key": letter.routing_key,
        "reason": letter.reason,
        "attempts": str(letter.attempts),
        "first seen": when(letter.first_seen),
        "dead at": when(letter.dead_at),
        "last error": letter.last_error,
        "content type": letter.content_type,
    }
    for name, value in rows.items():
        shown.add_row(name, cell(value))
    for name, header in sorted(letter.headers.items()):
        shown.add_row(cell(f"header {name}"), cell(msgspec.json.encode(header).decode()))
    return shown


@dlq.command()
@_filters
@click.option("--id", "message_id", help="Only the dead letters with this message id.")
@json_option
def replay(
    *,
    verb: str | None,
    reason: str | None,
    older_than: float | None,
    newer_than: float | None,
    message_id: str | None,
    as_json: bool,
) -> None:
    """Republish dead letters to their verb's queue as first attempts, keeping their message ids.

    Each is removed from the dead-letter queue only once the broker has confirmed its republication.
    """
    selection = _selection(verb, reason, older_than, newer_than, message_id=message_id)
    result = _with_queue(errors.settings(), lambda queue: queue.replay(selection))
    left = [{"message_id": letter.message_id, "reason": why} for letter, why in result.skipped]
    if as_json:
        print_json({"replayed": len(result.replayed), "left": left})
    else:
        click.echo(f"Replayed {_letters(len(result.replayed))}.")
    for each in left:
        note = f"left {each['message_id'] or '(no message id)'} in the dead-letter queue: {each['reason']}"
        click.echo(printable(note), err=True)
    if left:
        raise SystemExit(errors.FINDINGS)


@dlq.command()
@_filters
@click.option("--id", "message_id", help="Only the dead letters with this message id.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def purge(
    *,
    verb: str | None,
    reason: str | None,
    older_than: float | None,
    newer_than: float | None,
    message_id: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete dead letters for good (all, or those matching every filter given)."""
    if as_json and not yes:
        raise errors.InputError("--json: needs --yes, since no one is there to answer the confirmation")
    settings = errors.settings()
    selection = _selection(verb, reason, older_than, newer_than, message_id=message_id)
    if not yes:
        count = len(_with_queue(settings, lambda queue: queue.list(selection)))
        if count == 0:
            click.echo("No dead letters match.")
            return
        click.confirm(f"Delete {_letters(count)} for good?", abort=True)
    purged = _with_queue(settings, lambda queue: queue.purge(selection))
    if as_json:
        print_json({"purged": purged})
    else:
        click.echo(f"Purged {_letters(purged)}.")
