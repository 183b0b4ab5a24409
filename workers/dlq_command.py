"""``recalls dlq list|show|replay|purge``: the dead-letter queue for operators.

Failures print one ``error: ...`` line on stderr: exit 2 for settings the user must correct, exit 1 for
an unreachable RabbitMQ, a missing dead-letter queue or a dead letter not found.  No message shows the
AMQP password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika
import click
import msgspec
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity
from rich.console import Console
from rich.table import Table
from rich.text import Text

from recalls.shared.amqp import broker_url
from recalls.shared.contracts import VERBS
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.workers.cli_errors import fail, settings_or_exit
from recalls.workers.dead_letters import DeadLetter, DeadLetterQueue, Filter

_T = TypeVar("_T")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _with_queue(settings: Settings, work: Callable[[DeadLetterQueue], Awaitable[_T]]) -> _T:
    """Run ``work`` against the dead-letter queue, turning broker failures into one error line."""
    topology = Topology(settings.prefix)

    async def run() -> _T:
        connection: AbstractConnection = await aio_pika.connect(
            broker_url(settings), client_properties={"connection_name": "recalls dlq"}
        )
        async with connection:
            return await work(DeadLetterQueue(connection, topology))

    try:
        return asyncio.run(run())
    except ChannelNotFoundEntity:
        fail(f"no dead-letter queue {topology.dead_queue!r} (run `recalls topology`)", 1)
    except (AMQPError, OSError) as exc:
        host = settings.amqp_url.get_secret_value().rsplit("@", 1)[-1]
        fail(f"RabbitMQ at {host} is unavailable ({type(exc).__name__})", 1)


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


def _print_json(value: object) -> None:
    click.echo(msgspec.json.encode(value).decode())


def _console() -> Console:
    console = Console()
    # Piped output has no width to fit; rich's default 80 columns would fold ids and reasons.
    return console if console.is_terminal else Console(width=200)


# C0 and C1 controls but newline and tab: a dead letter's sender chose its bytes, and an escape sequence
# printed raw would drive the operator's terminal (retitle it, hide lines, fake output).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _cell(text: str) -> Text:
    """``text`` for a table: controls escaped, and no rich markup read into it."""
    return Text(_printable(text))


def _letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def dlq() -> None:
    """The dead-letter queue: list, show, replay and purge what could not be applied."""


@dlq.command(name="list")
@_filters
@_JSON
def list_(
    verb: str | None, reason: str | None, older_than: float | None, newer_than: float | None, as_json: bool
) -> None:
    """List the dead letters (all, or those matching every filter given)."""
    selection = _selection(verb, reason, older_than, newer_than)
    letters = _with_queue(settings_or_exit(), lambda queue: queue.list(selection))
    if as_json:
        _print_json([letter.summary() for letter in letters])
        return
    if not letters:
        click.echo("No dead letters match.")
        return
    table = Table(title=f"Dead letters ({len(letters)})")
    for heading in ("message id", "verb", "lane", "dead at", "attempts", "reason"):
        table.add_column(heading, overflow="fold")
    for letter in letters:
        table.add_row(
            _cell(letter.message_id),
            _cell(letter.verb),
            _cell(letter.lane),
            _when(letter.dead_at),
            str(letter.attempts),
            _cell(letter.reason),
        )
    _console().print(table)


@dlq.command()
@click.argument("message_id")
@_JSON
def show(message_id: str, as_json: bool) -> None:
    """Show the dead letters with MESSAGE_ID: headers, reason and body."""
    letters = _with_queue(settings_or_exit(), lambda queue: queue.list(Filter(message_id=message_id)))
    if not letters:
        fail(f"no dead letter with message id {message_id!r}", 1)
    if as_json:
        _print_json([letter.details() for letter in letters])
        return
    console = _console()
    for letter in letters:
        console.print(_details_table(letter))
        click.echo("body:")
        click.echo(_printable(letter.pretty_body()))


def _details_table(letter: DeadLetter) -> Table:
    table = Table(title=_cell(f"Dead letter {letter.message_id}"), show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows = {
        "verb": letter.verb,
        "lane": letter.lane,
        "routing key": letter.routing_key,
        "reason": letter.reason,
        "attempts": str(letter.attempts),
        "first seen": _when(letter.first_seen),
        "dead at": _when(letter.dead_at),
        "last error": letter.last_error,
        "content type": letter.content_type,
    }
    for name, value in rows.items():
        table.add_row(name, _cell(value))
    for name, header in sorted(letter.headers.items()):
        table.add_row(_cell(f"header {name}"), _cell(msgspec.json.encode(header).decode()))
    return table


@dlq.command()
@_filters
@click.option("--id", "message_id", help="Only the dead letters with this message id.")
def replay(
    *,
    verb: str | None,
    reason: str | None,
    older_than: float | None,
    newer_than: float | None,
    message_id: str | None,
) -> None:
    """Republish dead letters to their verb's queue as first attempts, keeping their message ids.

    Each is removed from the dead-letter queue only once the broker has confirmed its republication.
    """
    selection = _selection(verb, reason, older_than, newer_than, message_id=message_id)
    result = _with_queue(settings_or_exit(), lambda queue: queue.replay(selection))
    click.echo(f"Replayed {_letters(len(result.replayed))}.")
    for letter, why in result.skipped:
        left = f"left {letter.message_id or '(no message id)'} in the dead-letter queue: {why}"
        click.echo(_printable(left), err=True)
    if result.skipped:
        sys.exit(1)


@dlq.command()
@_filters
@click.option("--id", "message_id", help="Only the dead letters with this message id.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(
    *,
    verb: str | None,
    reason: str | None,
    older_than: float | None,
    newer_than: float | None,
    message_id: str | None,
    yes: bool,
) -> None:
    """Delete dead letters for good (all, or those matching every filter given)."""
    settings = settings_or_exit()
    selection = _selection(verb, reason, older_than, newer_than, message_id=message_id)
    if not yes:
        count = len(_with_queue(settings, lambda queue: queue.list(selection)))
        if count == 0:
            click.echo("No dead letters match.")
            return
        click.confirm(f"Delete {_letters(count)} for good?", abort=True)
    purged = _with_queue(settings, lambda queue: queue.purge(selection))
    click.echo(f"Purged {_letters(purged)}.")
