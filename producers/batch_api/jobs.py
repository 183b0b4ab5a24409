"""Batch checks: a submit's VINs become a batch, answered from the cache or checked through the fleet.

A VIN whose DVSA answer the store holds from within ``check_freshness`` is answered at once; the
others become ``get`` commands, journaled with the batch in one transaction (within the key's quota)
and then published on the bulk lane by a background task, so the client has its 202 before the broker
has confirmed thousands of messages.  The batch shows ``uploading`` until publishing is closed; one
served wholly from the cache is completed before the submit answers.

Publishing goes a page at a time, each page marked published once confirmed, under a lease that the
publishing process renews.  A process that dies while publishing leaves its batch leased to no one
once the lease runs out; every API process looks for such batches when it starts and every
:data:`RESUME_EVERY` seconds, and the one that takes a batch publishes what is left of it.  A page
published but not yet marked is published again: the same message_ids, which the fleet applies once in
effect.  Old batches are purged at start and then hourly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence

from recalls.producers.batch_api.quotas import Quota
from recalls.producers.publisher import Publisher
from recalls.shared.contracts import utc_now
from recalls.shared.settings import Settings
from recalls.shared.store.batches import Batches, BatchStatus
from recalls.shared.store.checks import VinChecks
from recalls.shared.store.database import Database

log = logging.getLogger("recalls.api")

PURGE_EVERY = 3600.0
# A publisher renews its lease every third of it, so a slow store write or two does not lose it; a
# dead publisher's batch waits at most this long (plus RESUME_EVERY) for another process.
PUBLISH_LEASE = dt.timedelta(seconds=15)
RESUME_EVERY = 5.0
PUBLISH_PAGE = 1000  # checks published, then marked, at a time: what a crash may publish twice


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
            vins,
            cached,
            owner=owner,
            webhook_url=webhook_url,
            lease=PUBLISH_LEASE,
            admission=self._quota.admission,
        )
        status = await self._batches.status(batch_id)
        assert status is not None  # started above; only the purge of batches a month old removes one
        if status.status == "publishing":  # after the status is read, so that it says uploading
            self._in_background(self._publish(batch_id))
        return status

    async def resume(self) -> None:
        """Publish the rest of each batch whose publisher died (its lease ran out) that this process takes."""
        try:
            taken = await self._batches.take_over(PUBLISH_LEASE)
        except Exception:
            log.exception("could not look for batches left unpublished")
            return
        for batch_id in taken:
            log.warning("batch %s: its publisher stopped before the end; publishing the rest", batch_id)
            self._in_background(self._publish(batch_id))

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work, name="batch-publish")
        self._publishing.add(task)  # a reference, so the task is not collected while it runs
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, batch_id: str) -> None:
        """Publish the batch's unpublished checks a page at a time, keeping its lease, then close it."""
        renewing = asyncio.create_task(self._keep_lease(batch_id), name="batch-lease")
        try:
            while commands := await self._batches.unpublished_checks(batch_id, PUBLISH_PAGE):
                # Already valid: each VIN passed the fleet's rule and message ids are digests.
                results = await self._publisher.publish_many(commands, lane="bulk", validated=True)
                await self._batches.published([result for result in results if isinstance(result, str)])
                failures = [result for result in results if isinstance(result, Exception)]
                if failures:
                    message = (
                        f"publishing: {len(failures)} of {len(commands)} checks not queued ({failures[0]})"
                    )
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
        finally:
            renewing.cancel()

    async def _keep_lease(self, batch_id: str) -> None:
        while True:
            await asyncio.sleep(PUBLISH_LEASE.total_seconds() / 3)
            try:
                await self._batches.renew(batch_id, PUBLISH_LEASE)
            except Exception:  # the next renewal may succeed; a lease lost costs a second publisher
                log.exception("batch %s: could not renew its publishing lease", batch_id)

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


async def every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
    """Do ``work`` every ``seconds``, first after ``seconds``, until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        await work()
