"""CSV files for the bad_input scenario, fed to ``recalls import`` (DVSA's SFTP format) as a user would.

A file mixes good rows (unique VINs, either date layout, any case, padded, some repeated) with bad rows
(one field wrong, or the wrong number of columns), with or without a header row, a byte-order mark,
blank lines, CRLF endings and quoting.  The command must never end in a traceback; it exits 3 when
rows were rejected, else 0; each bad row must be in the reject report naming its field; each good row
must be published once (the workers then apply it).  A broken file (bytes that are not UTF-8, a field
beyond the CSV reader's limit, an unterminated quote, NUL bytes) holds no good rows: it must only be
refused or read without a traceback.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from bench.faults.figures import Figures
from bench.faults.harness import FaultRun, Mode
from bench.faults.scenarios import fuzz
from bench.fleet_throughput import vin
from recalls.cli.errors import FINDINGS, OK
from recalls.producers.reject_report import report_path
from recalls.producers.snapshot_csv import COLUMNS, create_message_id
from recalls.shared.contracts import CreateCommand
from recalls.shared.settings import Settings

ENTRY = "from recalls.cli.main import main; main()"  # what the ``recalls`` console script runs
IMPORT_TIMEOUT = 120.0
SHOWN = 5
# Cells are trimmed before they are checked, so a character that spoils a cell must not be white space.
SPOILING = "".join(char for char in fuzz.FORBIDDEN if not char.isspace())
BROKEN = ("not utf-8", "huge field", "unterminated quote", "nul bytes")


@dataclass(frozen=True)
class GoodRow:
    reference: str
    dvsa_reference: str | None
    start: dt.date
    day_first: bool  # 31/03/2024 rather than 2024-03-31
    lower: bool
    padded: bool
    repeated: bool


@dataclass(frozen=True)
class BadRow:
    field: str  # what the reject report must name: a command field, or "row" for the column count
    cells: tuple[str, ...]


@dataclass(frozen=True)
class CsvCase:
    rows: tuple[GoodRow | BadRow, ...]
    header: bool
    bom: bool
    crlf: bool
    quote_all: bool
    blank_lines: bool
    broken: str  # "" or one of BROKEN


def files(broken: str) -> st.SearchStrategy[CsvCase]:
    """Plain files (``broken`` empty: good and bad rows), or files broken as ``broken`` says (bad rows)."""
    good = st.builds(
        GoodRow, fuzz.manufacturer_references(), st.none() | fuzz.dvsa_references(), fuzz.dates(),
        st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    )  # fmt: skip
    bad = _bad_rows()
    # Drawn first, so that the kinds come about as often as their share here says.
    row = st.sampled_from(["good", "good", "bad"]).flatmap(lambda kind: good if kind == "good" else bad)
    rows = st.lists(bad, max_size=5) if broken else st.lists(row, min_size=1, max_size=25)
    return st.builds(CsvCase, rows.map(tuple), *[st.booleans()] * 5, st.just(broken))


def _bad_rows() -> st.SearchStrategy[BadRow]:
    valid = ["WAUZZZF49HA036784", "ABC1234", "R/2022/123", "2024-03-31"]

    def spoil(index: int, name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[BadRow]:
        return values.map(lambda value: BadRow(name, (*valid[:index], value, *valid[index + 1 :])))

    spoiled = st.sampled_from(SPOILING)
    bad_dates = st.sampled_from(
        ["2025-02-30", "32/01/2025", "2025/01/01", "31-12-2025", "2025-13-01", "31/02/2025"]
    )
    return st.one_of(
        spoil(
            0,
            "vin",
            st.text(fuzz.VIN_LETTERS, max_size=15) | st.text(fuzz.VIN_LETTERS, min_size=18, max_size=30),
        ),
        spoil(0, "vin", fuzz.spoiled(fuzz.vins(), SPOILING)),
        spoil(
            1, "manufacturer_campaign_reference", st.just("") | st.text("ABC123", min_size=50, max_size=60)
        ),
        spoil(
            1,
            "manufacturer_campaign_reference",
            st.builds(lambda r, c: r + c, fuzz.manufacturer_references(), spoiled),
        ),
        spoil(2, "dvsa_campaign_reference", st.builds(lambda r, c: r + c, fuzz.dvsa_references(), spoiled)),
        spoil(3, "recall_campaign_start_date", bad_dates | st.text("abcdefgh-/.", min_size=1, max_size=12)),
        st.integers(1, 7)
        .filter(lambda n: n != len(COLUMNS))
        .map(lambda n: BadRow("row", tuple((valid * 2)[:n]))),
    )


@dataclass
class Written:
    """What a file holds: the good rows' commands (each once) and the bad rows' numbers and fields."""

    commands: dict[str, CreateCommand] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)
    rows: int = 0


def write(case: CsvCase, path: Path, vins: Iterator[str]) -> Written:
    """Write ``case`` to ``path``, the good rows on fresh VINs from ``vins``."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n" if case.crlf else "\n",
                        quoting=csv.QUOTE_ALL if case.quote_all else csv.QUOTE_MINIMAL)  # fmt: skip
    written, record = Written(), 0
    if case.header:
        writer.writerow(COLUMNS)
        record += 1
    for row in case.rows:
        cells = _good_cells(row, next(vins), written) if isinstance(row, GoodRow) else list(row.cells)
        for _ in range(2 if isinstance(row, GoodRow) and row.repeated else 1):
            if case.blank_lines:
                text.write("\r\n" if case.crlf else "\n")
                record += 1
            record += 1
            if isinstance(row, BadRow):
                written.bad[record] = row.field
            writer.writerow(cells)
            written.rows += 1
    data = ("\ufeff" if case.bom else "") + text.getvalue()
    path.write_bytes(_break(data, case.broken))
    return written


def _good_cells(row: GoodRow, target: str, written: Written) -> list[str]:
    start = row.start.strftime("%d/%m/%Y") if row.day_first else row.start.isoformat()
    cells = [target.lower() if row.lower else target, row.reference, row.dvsa_reference or "", start]
    message_id = create_message_id(target, row.reference, row.dvsa_reference, row.start)
    written.commands[message_id] = CreateCommand(
        message_id=message_id,
        vin=target.upper(),
        manufacturer_campaign_reference=row.reference,
        dvsa_campaign_reference=row.dvsa_reference,
        recall_campaign_start_date=row.start,
    )
    return [f" {cell} " for cell in cells] if row.padded else cells


def _break(data: str, how: str) -> bytes:
    first = "WAUZZZF49HA036784,ABC1234,,2024-03-31\n"
    match how:
        case "not utf-8":
            return data.encode() + b"WAUZZZF49HA03678\xff,ABC\xfe1234,,2024-03-31\n"
        case "huge field":
            return (data + "WAUZZZF49HA036784," + "A" * 200_000 + ",,2024-03-31\n").encode()
        case "unterminated quote":
            return (data + '"' + first * 3).encode()
        case "nul bytes":
            return (data + first.replace("ABC", "A\x00B\x00C")).encode()
    return data.encode()


@dataclass
class CsvResult:
    """What the CSV files did: the commands they published (for the run's workload) and what went wrong."""

    files: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    rows_rejected: int = 0
    crashes: list[str] = field(default_factory=list)
    misreported: list[str] = field(default_factory=list)
    published: list[CreateCommand] = field(default_factory=list)

    def judge(self, figures: Figures) -> None:
        figures.extra |= {
            "csv_files": self.files,
            "csv_kinds": dict(self.kinds),
            "csv_rows": self.rows,
            "csv_rows_rejected": self.rows_rejected,
            "csv_crashes": len(self.crashes),
            "csv_published": len(self.published),
        }
        if self.crashes:
            figures.problem(
                f"recalls import crashed on {len(self.crashes)} files: " + " || ".join(self.crashes[:SHOWN])
            )
        if self.misreported:
            figures.problem(f"{len(self.misreported)} CSV mistakes: " + " || ".join(self.misreported[:SHOWN]))


async def run(fleet: FaultRun, mode: Mode, tag: str) -> CsvResult:
    """Feed the fuzzed files to ``recalls import``, one after another, against the run's fleet."""
    cases = await asyncio.to_thread(_cases, mode.size(4, 24), mode.size(1, 4))
    result = CsvResult()
    vins = (vin(tag, "V", n) for n in itertools.count())
    with tempfile.TemporaryDirectory(prefix="faults-csv-") as scratch:
        env = _environment(fleet.settings, Path(scratch) / "store.db")
        for index, case in enumerate(cases):
            path = Path(scratch) / f"fuzz-{index}.csv"
            written = await asyncio.to_thread(write, case, path, vins)
            code, output = await _import(env, path)
            result.files += 1
            result.kinds[case.broken or "plain"] += 1
            result.rows += written.rows
            _check(result, case, written, path=path, code=code, output=output)
    return result


def _cases(plain: int, each_broken: int) -> list[CsvCase]:
    """``plain`` plain files, then ``each_broken`` files broken in each way."""
    return [
        case
        for broken in ("", *BROKEN)
        for case in fuzz.generated(files(broken), each_broken if broken else plain)
    ]


def _environment(settings: Settings, store: Path) -> dict[str, str]:
    """The import's environment: the run's broker, prefix and retry tiers, a store of its own."""
    return {
        **os.environ,
        "RECALLS_AMQP_URL": settings.amqp_url.get_secret_value(),
        "RECALLS_PREFIX": settings.prefix,
        "RECALLS_RETRY_TIERS": json.dumps(list(settings.retry_tiers)),
        "RECALLS_SQLITE_PATH": str(store),
    }


async def _import(env: dict[str, str], path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "import", str(path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), IMPORT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"no end after {IMPORT_TIMEOUT:g} s"
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def _check(result: CsvResult, case: CsvCase, written: Written, *, path: Path, code: int, output: str) -> None:
    name = f"{path.name} ({case.broken or 'plain'})"
    if "Traceback" in output or code < 0:
        errors = [
            line.strip(" |")
            for line in output.splitlines()
            if re.match(r"[\s|]*[\w.]+(Error|Exception)\b", line)
        ]
        result.crashes.append(f"{name}: exit {code}, {(errors or [output.strip()[-200:]])[-1][:200]}")
        return
    if case.broken:
        return  # refused or read: either is fine, without a traceback
    expected = FINDINGS if written.bad else OK  # rejected rows are findings: the report names them
    if code != expected:
        result.misreported.append(f"{name}: exit {code}, not {expected}: {output.strip()[-300:]}")
        return
    reported = _reject_report(report_path(path))
    result.rows_rejected += len(reported)
    for row, wanted in written.bad.items():
        if reported.get(row, ("", ""))[0] != wanted:
            result.misreported.append(
                f"{name} row {row}: {wanted} wanted in the reject report, got {reported.get(row)}"
            )
    for row in reported.keys() - written.bad.keys():
        result.misreported.append(f"{name} row {row}: a good row rejected {reported[row]}")
    published = re.search(r"([\d,]+) published", output)
    count = int(published[1].replace(",", "")) if published else -1
    if count != len(written.commands):
        result.misreported.append(f"{name}: {count} published, {len(written.commands)} good rows")
    result.published += written.commands.values()


def _reject_report(path: Path) -> dict[int, tuple[str, str]]:
    """Row number -> (field, reason) of each row in an import's reject report (none: no report)."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as report:
        lines = list(csv.reader(report))[1:]
    return {int(line[0]): (line[1], line[2]) for line in lines}
