"""The reject report of an import or sync: one line per refused row, beside the input file.

``<input>.rejects.csv`` has the columns ``row, field, reason`` followed by the row as it was read, so a
user can fix the rows and feed the report's last four columns back in.  The file is written only when
a row is refused, and rewritten by each run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO

from recalls.producers.snapshot_csv import COLUMNS, RowError


def report_path(source: Path) -> Path:
    return source.with_name(source.name + ".rejects.csv")


class RejectReport:
    """Appends refused rows to the report; call :meth:`close` at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._file: IO[str] | None = None
        path.unlink(missing_ok=True)  # a report from an earlier run describes that run

    def add(self, rejected: list[RowError]) -> None:
        """Write these rows (blocking file I/O: async callers run it in a thread)."""
        if not rejected:
            return
        if self._file is None:
            self._file = self.path.open("w", newline="", encoding="utf-8")
            csv.writer(self._file).writerow(["row", "field", "reason", *COLUMNS])
        writer = csv.writer(self._file)
        for row in rejected:
            for error in row.errors:
                writer.writerow([row.row, error.field, error.reason, *row.line])
        self.rows += len(rejected)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
