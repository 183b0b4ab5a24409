"""``recalls import`` and ``recalls sync`` as a user runs them: Ctrl-C and resume, and a dry run."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from aio_pika.abc import AbstractChannel

from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from tests.integration.conftest import worker_env
from tests.support.csv_files import good_row, write_csv

ROWS = 30_000


async def recalls(settings: Settings, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from recalls.cli.main import main; main()", *args,
        env=worker_env(settings), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def queued_creates(channel: AbstractChannel, settings: Settings) -> int:
    # Straight to the AMQP channel: aio-pika's robust channel answers a repeated declare from its cache.
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(
        Topology(settings.prefix).command_queue("create", "bulk"), passive=True
    )
    return declared.message_count or 0


async def test_ctrl_c_stops_an_import_cleanly_and_the_same_command_continues(
    tmp_path: Path, settings: Settings, channel: AbstractChannel
) -> None:
    source = write_csv(tmp_path / "historic.csv", [good_row(n) for n in range(ROWS)])
    first = await recalls(settings, "import", str(source))
    # The import's progress goes to a terminal only; RabbitMQ's queue shows when the first chunk landed.
    async with asyncio.timeout(60):
        while await queued_creates(channel, settings) == 0:
            assert first.returncode is None, (await first.communicate())[0].decode()
            await asyncio.sleep(0.05)
    first.send_signal(signal.SIGINT)
    out, _ = await first.communicate()
    assert first.returncode == 130, out.decode()
    assert "stopped by Ctrl-C: run the same command again to continue" in out.decode()
    published_first = await queued_creates(channel, settings)
    assert 0 < published_first < ROWS

    second = await recalls(settings, "import", str(source))
    out, _ = await second.communicate()
    assert second.returncode == 0, out.decode()
    assert f"{ROWS - published_first:,} published" in out.decode()
    assert await queued_creates(channel, settings) == ROWS  # every row once, none twice


async def test_a_dry_run_prints_the_plan_and_publishes_nothing(
    tmp_path: Path, settings: Settings, channel: AbstractChannel
) -> None:
    snapshot = write_csv(tmp_path / "snapshot-2026-11-22.csv", [good_row(n) for n in range(7)])
    run = await recalls(settings, "sync", str(snapshot), "--dry-run")
    out, err = await run.communicate()
    assert run.returncode == 0, err.decode()
    text = out.decode()
    assert "7 rows, 0 rejected, 0 unchanged" in text
    assert "create 7 recalls new to the ledger" in text
    assert "rectification date 2026-11-22" in text
    assert "dry run: nothing published" in text
    assert await queued_creates(channel, settings) == 0


async def test_a_file_that_is_not_csv_text_is_one_clear_error_not_a_traceback(
    tmp_path: Path, settings: Settings, channel: AbstractChannel
) -> None:
    binary = tmp_path / "latin1.csv"
    binary.write_bytes(b"vin,manufacturer campaign reference\nWAUZZZF49HA03678\xe9,RC-1\n")
    huge = tmp_path / "huge.csv"
    huge.write_text("WAUZZZF49HA036784," + "x" * 200_000 + ",R/2025/001,2025-01-01\n", encoding="utf-8")
    for path, reason in ((binary, "not UTF-8 text (byte 0xe9"), (huge, "line 1: field larger than")):
        run = await recalls(settings, "import", str(path))
        _, err = await run.communicate()
        assert run.returncode == 2, err.decode()
        assert reason in err.decode()
        assert "Traceback" not in err.decode()
        assert str(path) in err.decode()
    assert await queued_creates(channel, settings) == 0
