"""Batch checks: a submit's VINs become a batch, answered from the cache or checked through the fleet.

A VIN whose DVSA answer the store holds from within ``check_freshness`` is answered at once; the
others become ``get`` commands, journaled with the batch in one transaction (within the key's quota)
and then published on the bulk lane by a background task, so the client has its 202 before the broker
has confirmed thousands of messages.  The batch shows ``uploading`` until publishing is closed; one
served wholly from the cache is completed before the submit answers.  Old batches are purged at start
and then hourly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Sequence

from producers.batch_api.quotas import Quota
from producers.publisher import Publisher
from shared.contracts import Command, utc_now
from shared.settings import Settings
from shared.store.batches import Batches, BatchStatus, check_command
from shared.store.checks import VinChecks
from shared.store.database import Database

log = logging.getLogger("recalls.api")

PURGE_EVERY = 3600.0


class BatchChecks:
    """Starts batch checks and publishes them; :meth:`drain` waits for publishing still under way."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        publisher: Publisher,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._batches = Batches(db, clock=clock)
        self._checks = VinChecks(db)
        self._publisher = publisher
        self._clock = clock
        self._quota = Quota(settings.api_rate_limit, settings.api_max_open_batches)
        self._publishing: set[asyncio.Task[None]] = set()

    @property
    def batches(self) -> Batches:
        return self._batches

    async def admit(self, owner: str) -> None:
        """Refuse (429) a key over its quota before its VINs are read (:meth:`submit` counts again)."""
        admission = self._quota.admission
        admission.check(await self._batches.usage(owner, admission.window))

    async def submit(self, vins: Sequence[str], *, owner: str, webhook_url: str | None) -> BatchStatus:
        """Start a batch of ``vins`` (distinct, valid, upper-case) for the key ``owner``; its status."""
        since = self._clock() - dt.timedelta(seconds=self._settings.check_freshness)
        cached = await self._checks.fresh(vins, since)
        batch_id = await self._batches.start_check(
            vins, cached, owner=owner, webhook_url=webhook_url, admission=self._quota.admission
        )
        status = await self._batches.status(batch_id)
        assert status is not None  # started above; only the purge of batches a month old removes one
        if status.status == "publishing":  # after the status is read, so that it says uploading
            commands: list[Command] = [check_command(batch_id, vin) for vin in vins if vin not in cached]
            self._in_background(self._publish(batch_id, commands))
        return status

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work, name="batch-publish")
        self._publishing.add(task)  # a reference, so the task is not collected while it runs
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, batch_id: str, commands: list[Command]) -> None:
        try:
            # Already valid: each VIN passed the fleet's rule and message ids are digests.
            results = await self._publisher.publish_many(commands, lane="bulk", validated=True)
            await self._batches.published([result for result in results if isinstance(result, str)])
            failures = [result for result in results if isinstance(result, Exception)]
            if failures:
                message = f"publishing: {len(failures)} of {len(commands)} checks not queued ({failures[0]})"
                log.error("batch %s failed: %s", batch_id, message)
                await self._batches.fail(batch_id, message)
                return
            await self._batches.close_publishing(batch_id, rejected=0, skipped=0)
        except Exception:
            log.exception("batch %s: publishing its checks failed", batch_id)
            try:
                await self._batches.fail(batch_id, "publishing: interrupted by an internal error")
            except Exception:
                log.exception("batch %s: could not be marked failed", batch_id)

    async def drain(self) -> None:
        """Wait for the batches still being published (at shutdown)."""
        await asyncio.gather(*self._publishing, return_exceptions=True)

    async def purge(self) -> None:
        """Delete batch checks older than ``batch_retention`` (a failure is logged; the next try mends it)."""
        older_than = self._clock() - dt.timedelta(seconds=self._settings.batch_retention)
        try:
            purged = await self._batches.purge(older_than)
        except Exception:
            log.exception("could not purge batches older than %s", older_than.isoformat())
            return
        if purged:
            log.info("purged %d batches older than %s", purged, older_than.isoformat())

    async def purge_every(self, seconds: float = PURGE_EVERY) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.purge()
