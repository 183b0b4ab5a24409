"""``recalls import``: the first historic load, a CSV file of DVSA's SFTP format sent as bulk creates.

The file is streamed in chunks through a small pipeline, so memory stays flat for any size:

    read + validate (a thread)  ->  skip what the ledger holds  ->  claim in the batch journal
        ->  publish to the bulk lane with confirms (a child process's work)  ->  mark published

Each row's message_id comes from its content, and the journal keeps every message_id published, so a
duplicate row, a re-run of the same file, or a run resumed after Ctrl-C publishes nothing twice.  Bad
rows go to the reject report and never stop the good ones.  The run is a batch job
(``recalls batch status ID``) whose commands the workers then carry to DVSA behind live work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from recalls.producers.publisher import PublishResult
from recalls.producers.reject_report import RejectReport, report_path
from recalls.producers.snapshot_csv import Chunk, SnapshotReader, chunks
from recalls.shared.contracts import Command, CreateCommand, Lane
from recalls.shared.store.batches import Batches
from recalls.shared.store.ledger import Ledger


@dataclass
class ImportProgress:
    """What the run has done so far; also its summary at the end."""

    batch_id: str
    source: Path
    size_chars: int
    rows_read: int = 0
    chars_read: int = 0
    published: int = 0
    rejected: int = 0
    duplicates: int = 0  # repeated in the file, or published by an earlier run
    in_ledger: int = 0  # DVSA already holds them, as far as the ledger knows
    failed_to_publish: int = 0  # claimed but not confirmed: a re-run publishes them
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False  # Ctrl-C: a re-run continues
    # Claimed in this run, not yet marked published: the journal would hand a repeat of one out again.
    unmarked: set[str] = field(default_factory=set, repr=False)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


class BulkPublisher(Protocol):
    """What the import needs of a publisher: :class:`~recalls.producers.publisher.Publisher` in this process,
    or :class:`~recalls.producers.publish_process.PublisherProcess` in a child (what ``recalls import``
    uses)."""

    async def publish_many(
        self, commands: Iterable[Command], *, lane: Lane, max_in_flight: int, validated: bool
    ) -> list[PublishResult]: ...


Report = Callable[[ImportProgress], None]
CHUNKS_IN_FLIGHT = 3  # chunks awaiting confirms at once: enough to keep the broker busy between them


@dataclass
class Importer:
    publisher: BulkPublisher
    ledger: Ledger
    batches: Batches
    chunk_rows: int = 1000
    on_progress: Report = field(default=lambda progress: None)

    async def run(
        self,
        source: Path,
        stop: asyncio.Event | None = None,
        *,
        kind: str = "import",
        then: Sequence[Command] = (),
    ) -> ImportProgress:
        """Import ``source``, then publish ``then``; return early, cleanly, when ``stop`` is set."""
        batch_id = await self.batches.start(kind, str(source))
        size = (await asyncio.to_thread(source.stat)).st_size
        run = _Run(
            progress=ImportProgress(batch_id, source, size_chars=size),
            reader=await asyncio.to_thread(
                SnapshotReader.open, source, chunk_rows=self.chunk_rows, correlation_id=batch_id
            ),
            rejects=await asyncio.to_thread(RejectReport, report_path(source)),
            stop=stop or asyncio.Event(),
            then=then,
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._prepare(run))
                group.create_task(self._publish(run))
        finally:
            await asyncio.to_thread(run.reader.close)
            await asyncio.to_thread(run.rejects.close)
        progress = run.progress
        progress.stopped = run.stop.is_set()
        await self.batches.close_publishing(
            batch_id,
            rejected=progress.rejected,
            skipped=progress.duplicates + progress.in_ledger,
            cancelled=progress.stopped,
        )
        self.on_progress(progress)
        return progress

    async def _prepare(self, run: _Run) -> None:
        """Read, validate and claim chunks ahead of the publisher, then the commands that follow."""
        try:
            async for chunk in chunks(run.reader):
                if run.stop.is_set():
                    break
                await asyncio.to_thread(run.rejects.add, chunk.rejected)
                await run.ready.put(await self._claim_rows(chunk, run.progress))
            for start in range(0, len(run.then), self.chunk_rows):
                if run.stop.is_set():
                    break
                given = [
                    msgspec.structs.replace(command, correlation_id=run.progress.batch_id)
                    for command in run.then[start : start + self.chunk_rows]
                ]
                claimed = await self._claim(given, run.progress)
                run.progress.duplicates += len(given) - len(claimed)
                await run.ready.put(claimed)
        finally:
            await run.ready.put(None)

    async def _claim_rows(self, chunk: Chunk, progress: ImportProgress) -> list[Command]:
        """The chunk's creates that neither the ledger nor the journal has seen."""
        progress.rows_read += len(chunk.commands) + len(chunk.rejected)
        progress.chars_read = chunk.chars_read
        progress.rejected += len(chunk.rejected)
        unique = {command.message_id: command for _, command in chunk.commands}
        held = await self.ledger.states({_key(command) for command in unique.values()})
        fresh = [c for c in unique.values() if held.get(_key(c), "deleted") == "deleted"]  # none, or gone
        progress.in_ledger += len(unique) - len(fresh)
        claimed = await self._claim(fresh, progress)
        progress.duplicates += len(chunk.commands) - len(unique) + len(fresh) - len(claimed)
        return claimed

    async def _claim(self, commands: Sequence[Command], progress: ImportProgress) -> list[Command]:
        claimed = [
            command
            for command in await self.batches.claim(progress.batch_id, commands)
            if command.message_id not in progress.unmarked
        ]
        progress.unmarked.update(command.message_id for command in claimed)
        return claimed

    async def _publish(self, run: _Run) -> None:
        """Publish chunks as they come, a few at once, so confirms of one overlap the next."""
        window = asyncio.Semaphore(CHUNKS_IN_FLIGHT)
        async with asyncio.TaskGroup() as group:
            while (commands := await run.ready.get()) is not None:
                if not commands:
                    continue
                await window.acquire()
                group.create_task(self._publish_chunk(run.progress, commands, window))

    async def _publish_chunk(
        self, progress: ImportProgress, commands: list[Command], window: asyncio.Semaphore
    ) -> None:
        try:
            results = await self.publisher.publish_many(
                commands, lane="bulk", max_in_flight=len(commands), validated=True
            )
        finally:
            window.release()  # the next chunk goes out while this one is marked
        confirmed = [result for result in results if isinstance(result, str)]
        await self.batches.published(confirmed)
        progress.unmarked.difference_update(command.message_id for command in commands)
        progress.published += len(confirmed)
        progress.failed_to_publish += len(results) - len(confirmed)
        self.on_progress(progress)


@dataclass
class _Run:
    """One run's moving parts: the file, its reject report, and the chunks between the two tasks."""

    progress: ImportProgress
    reader: SnapshotReader
    rejects: RejectReport
    stop: asyncio.Event
    then: Sequence[Command]
    ready: asyncio.Queue[list[Command] | None] = field(default_factory=lambda: asyncio.Queue(maxsize=2))


def _key(command: CreateCommand) -> tuple[str, str]:
    return command.vin, command.manufacturer_campaign_reference
