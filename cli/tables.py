"""Tables and progress bars for people, drawn with rich.

Progress goes to stderr and disappears when done, so stdout holds only the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from recalls.cli.output import printable


def console() -> Console:
    """A console for stdout; piped output gets 200 columns, so ids and times are not folded at 80."""
    found = Console()
    return found if found.is_terminal else Console(width=200)


def cell(text: str) -> Text:
    """``text`` for a table: controls escaped, and no rich markup read into it."""
    return Text(printable(text))


def table(title: str | Text, headings: tuple[str, ...], *, show_header: bool = True) -> Table:
    """A table whose columns fold long values rather than cut them."""
    found = Table(title=title, show_header=show_header)
    for heading in headings:
        found.add_column(heading, overflow="fold")
    return found


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[tuple[Progress, TaskID]]:
    """A bar on stderr, with percent done and time left once the total is known, and its one task."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield bar, bar.add_task(description, total=None, figures="")
