"""The CLI's one way to print results: ``--json`` for programs, text for people.

Every command that prints results takes ``--json`` (:data:`json_option`) and then prints one JSON
document on stdout and nothing else there; notes for people go to stderr.  Tables live in
:mod:`recalls.cli.tables`, so that a command printing none never loads rich.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click
import msgspec

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")

# C0 and C1 controls but newline and tab: text from the broker or DVSA chose its bytes, and an escape
# sequence printed raw would drive the operator's terminal (retitle it, hide lines, fake output).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout (dataclasses, datetimes and dates as msgspec encodes them)."""
    click.echo(msgspec.json.encode(value).decode())


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``\\xNN`` escapes."""
    return _CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def when(value: dt.datetime | dt.date | float | None) -> str:
    """A time for people: UTC to the second, a date as ISO, a UNIX timestamp as UTC; blank for none."""
    if value is None:
        return ""
    if isinstance(value, float | int):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.isoformat()
