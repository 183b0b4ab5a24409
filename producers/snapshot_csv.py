"""DVSA's SFTP file format, read as a stream of create commands and row errors.

The format (DVSA's daily snapshot and one-off historic transfer) has four columns in this order:
``VIN, ManufacturerRecallCampaignReference, DVSACampaignReference, RecallCampaignStartDate``, with or
without a header row; the DVSA reference may be empty.  Every row becomes a :class:`CreateCommand`
checked by the same rules as the publisher, or a :class:`RowError` naming the row, field and reason.

Rows are read in chunks so that memory stays flat for any file size.  :func:`chunks` reads the file's
bytes in a thread (the event loop never waits on the disk) and parses them on the loop: parsing in a
thread would only contend for the interpreter lock with the publishing it feeds.  A row's
message_id is derived from its content, so the same row read again (a re-run, a duplicate row, the same
recall in a later snapshot) is the same command.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from recalls.shared.contracts import CreateCommand
from recalls.shared.message_ids import content_id
from recalls.shared.validation import FieldError, InvalidCommand, validate

COLUMNS = (
    "VIN",
    "ManufacturerRecallCampaignReference",
    "DVSACampaignReference",
    "RecallCampaignStartDate",
)
_DATE_FORMATS = ("%d/%m/%Y",)
_READ_AHEAD_CHARS = 256 * 1024


@dataclass(frozen=True)
class RowError:
    """A row that cannot become a command; ``line`` is the row as read, for the reject report."""

    row: int
    errors: list[FieldError]
    line: list[str]

    def __str__(self) -> str:
        return f"row {self.row}: " + "; ".join(str(error) for error in self.errors)


@dataclass
class Chunk:
    commands: list[tuple[int, CreateCommand]]  # (row number, command)
    rejected: list[RowError]
    chars_read: int  # how far into the file the chunk ends, for progress


def create_message_id(vin: str, manufacturer_ref: str, dvsa_ref: str | None, start: dt.date) -> str:
    """The message_id of the create that opens this recall: the same whoever builds it."""
    return content_id(f"create|{vin.upper()}|{manufacturer_ref}|{dvsa_ref or ''}|{start}")


class UnreadableFile(Exception):
    """The file cannot be read as CSV text at all: not UTF-8, a field past the CSV limit, a runaway quote."""


class SnapshotReader:
    """Parses a snapshot file in chunks of ``chunk_rows`` rows from lines read ahead by :meth:`read_ahead`."""

    def __init__(self, stream: IO[str], *, chunk_rows: int = 1000, correlation_id: str | None = None) -> None:
        self._stream = stream
        self._name = str(getattr(stream, "name", "the file"))
        self._chunk_rows = chunk_rows
        self._correlation_id = correlation_id
        self._chars_read = 0
        self._lines: deque[str] = deque()
        self._end_of_file = False
        self._rows = self._numbered_rows()

    @classmethod
    def open(cls, path: Path, *, chunk_rows: int = 1000, correlation_id: str | None = None) -> SnapshotReader:
        stream = path.open(newline="", encoding="utf-8-sig")  # Excel writes a byte-order mark
        return cls(stream, chunk_rows=chunk_rows, correlation_id=correlation_id)

    def close(self) -> None:
        self._stream.close()

    @property
    def wants_lines(self) -> bool:
        # Twice a chunk ahead, so a quoted field's line breaks never run past what has been read.
        return not self._end_of_file and len(self._lines) < 2 * self._chunk_rows

    def read_ahead(self) -> None:
        """Read the next lines of the file (blocking: async callers run it in a thread)."""
        try:
            lines = self._stream.readlines(_READ_AHEAD_CHARS)
        except UnicodeDecodeError as exc:
            byte = exc.object[exc.start]
            raise UnreadableFile(f"{self._name}: not UTF-8 text (byte {byte:#04x}); save as UTF-8") from None
        self._lines.extend(lines)
        self._end_of_file = not lines

    def next_chunk(self) -> Chunk | None:
        """The next rows as commands and errors; ``None`` at the end of the file."""
        while self.wants_lines:
            self.read_ahead()
        chunk = Chunk(commands=[], rejected=[], chars_read=0)
        for number, line in self._rows:
            parsed = self._parse(number, line)
            if isinstance(parsed, RowError):
                chunk.rejected.append(parsed)
            else:
                chunk.commands.append((number, parsed))
            if len(chunk.commands) + len(chunk.rejected) >= self._chunk_rows:
                break
        if not chunk.commands and not chunk.rejected:
            return None
        chunk.chars_read = self._chars_read
        return chunk

    def __iter__(self) -> Iterator[Chunk]:
        while (chunk := self.next_chunk()) is not None:
            yield chunk

    def _read_lines(self) -> Iterator[str]:
        while self._lines or not self._end_of_file:
            if not self._lines:
                raise UnreadableFile(f"{self._name}: a row spans more than {2 * self._chunk_rows} lines")
            line = self._lines.popleft()
            self._chars_read += len(line)
            yield line

    def _numbered_rows(self) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(self._read_lines())
        try:
            yield from self._rows_of(reader)
        except csv.Error as exc:
            raise UnreadableFile(f"{self._name} line {reader.line_num}: {exc}") from None

    def _rows_of(self, reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
        for number, line in enumerate(reader, start=1):
            if not line or all(not cell.strip() for cell in line):
                continue  # blank lines are not rows
            if number == 1 and _is_header(line):
                continue
            yield number, line

    def _parse(self, number: int, line: list[str]) -> CreateCommand | RowError:
        if len(line) != len(COLUMNS):
            reason = f"expected {len(COLUMNS)} columns ({', '.join(COLUMNS)}), found {len(line)}"
            return RowError(number, [FieldError("row", reason)], line)
        vin, manufacturer_ref, dvsa_ref, start_text = (cell.strip() for cell in line)
        start = _date(start_text)
        if start is None:
            reason = "must be a date such as 2024-03-31 or 31/03/2024"
            return RowError(number, [FieldError("recall_campaign_start_date", reason)], line)
        try:
            command = validate(
                CreateCommand(
                    message_id=create_message_id(vin, manufacturer_ref, dvsa_ref or None, start),
                    correlation_id=self._correlation_id,
                    vin=vin,
                    manufacturer_campaign_reference=manufacturer_ref,
                    dvsa_campaign_reference=dvsa_ref or None,
                    recall_campaign_start_date=start,
                )
            )
        except InvalidCommand as exc:
            return RowError(number, exc.errors, line)
        assert isinstance(command, CreateCommand)
        return command


async def chunks(reader: SnapshotReader) -> AsyncIterator[Chunk]:
    """The reader's chunks, with the file read in a thread and each chunk parsed on the loop."""
    while True:
        while reader.wants_lines:
            await asyncio.to_thread(reader.read_ahead)
        chunk = reader.next_chunk()
        if chunk is None:
            return
        yield chunk


def _is_header(line: list[str]) -> bool:
    return [cell.strip().lower() for cell in line] == [column.lower() for column in COLUMNS]


def _date(text: str) -> dt.date | None:
    if len(text) == 10 and text[4] == "-":
        try:
            return dt.date.fromisoformat(text)  # the usual case, many times faster than strptime
        except ValueError:
            return None
    for layout in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, layout).date()
        except ValueError:
            continue
    return None
