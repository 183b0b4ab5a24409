"""The prefix's one rate budget: DVSA's 25/s is spent by one local worker or by one fleet, never both.

In local mode (no ``RECALLS_REDIS_URL``) a worker keeps DVSA's 25/s in its own process, so a second
worker on the prefix would double the rate.  A local worker therefore holds a lock in the broker, the
exclusive queue ``<prefix>.worker.local`` (RabbitMQ refuses it to a second connection with
RESOURCE_LOCKED and deletes it when the holder's connection goes, SIGKILL included).  Fleet workers
each consume ``<prefix>.worker.fleet``, an auto-delete queue that goes with the last of them (and
expires should one die between declaring and consuming it).  Each worker takes its own mark first,
then looks for the other mode's (a passive declare): whichever order two workers start in, the one
that looks last sees the other's mark, so at least one refuses with :class:`Refused`.

**Reconnects.**  The marks live on a raw channel of their own on the worker's connection, which aio-pika
does not restore: a robust channel would re-declare them when the connection comes back, and if that
failed (another worker took the lock meanwhile) the robust connection would tear down and retry in a
loop, consuming between tries with a budget it no longer holds.  Instead, after a reconnect the claim
is taken again here, in the same order, and until it is, :meth:`BudgetClaim.permits` holds every
delivery back from DVSA.  A lock still held is retried for a while (the broker may not yet have noticed
that this worker's old connection is dead); if another worker keeps it, or the other mode's mark has
appeared, the claim is lost and the worker stops, then exits 2 with the refusal, rather than spend a
second budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractRobustConnection, UnderlayConnection
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity

from recalls.shared.settings import Settings

log = logging.getLogger("recalls.worker.budget")

RETAKE_PATIENCE_S = 40.0  # the broker notices a dead connection within about three 10 s heartbeats
RETAKE_PAUSE_S = 1.0
MARKER_EXPIRES_MS = 60_000


class Refused(Exception):
    """Another worker's rate budget is in use on this prefix: the message is the line for the operator."""


class LockHeld(Refused):
    """The local-mode lock is held by another connection."""


def lock_queue(prefix: str) -> str:
    return f"{prefix}.worker.local"


def marker_queue(prefix: str) -> str:
    return f"{prefix}.worker.fleet"


def local_held(settings: Settings) -> str:
    return (
        f"another worker on prefix {settings.prefix!r} runs in local mode (its own {settings.rate_limit}/s "
        "budget); a second worker needs RECALLS_REDIS_URL (fleet mode) on all of them"
    )


def fleet_present(settings: Settings) -> str:
    return (
        f"workers on prefix {settings.prefix!r} run in fleet mode (one budget in Redis); this worker has no "
        f"RECALLS_REDIS_URL and would spend its own {settings.rate_limit}/s beside them: set it here too"
    )


class BudgetClaim:
    """This worker's mark on its prefix (the local lock or the fleet marker), kept across reconnects."""

    def __init__(
        self, connection: AbstractRobustConnection, settings: Settings, on_lost: Callable[[Refused], None]
    ) -> None:
        self._connection = connection
        self._settings = settings
        self._local = settings.redis_url is None
        self._on_lost = on_lost
        self._channel: AbstractChannel | None = None
        self._taken_on: UnderlayConnection | None = None  # the physical connection the claim holds on
        self._retaking: asyncio.Task[None] | None = None
        self._released = False
        self.lost: Refused | None = None

    @classmethod
    async def take(
        cls, connection: AbstractRobustConnection, settings: Settings, on_lost: Callable[[Refused], None]
    ) -> BudgetClaim:
        """Claim the budget or raise :class:`Refused`; ``on_lost`` hears if a reconnect loses it."""
        claim = cls(connection, settings, on_lost)
        await claim._take()
        connection.reconnect_callbacks.add(claim._reconnected)
        return claim

    async def permits(self) -> bool:
        """Whether a delivery may go to DVSA now: on a new connection, only once the claim is retaken."""
        if self._taken_on is not self._connection.transport and not self._released and self.lost is None:
            await asyncio.wait({self._retake()})  # not cancelled with this delivery: others wait on it
        return self._taken_on is self._connection.transport and not self._released and self.lost is None

    async def release(self) -> None:
        """Give the mark back at once (a lock left to the broker's clean-up could refuse a successor)."""
        self._released = True
        self._connection.reconnect_callbacks.discard(self._reconnected)
        if self._retaking is not None:
            self._retaking.cancel()
            await asyncio.gather(self._retaking, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None:
            await self._drop(channel)

    def _reconnected(self, *_: object) -> None:
        self._retake()  # an idle worker learns of a conflict too, not only one that gets a delivery

    def _retake(self) -> asyncio.Task[None]:
        if self._retaking is None or self._retaking.done():
            self._retaking = asyncio.create_task(self._take_again(), name="budget-claim")
        return self._retaking

    async def _take_again(self) -> None:
        loop, prefix = asyncio.get_running_loop(), self._settings.prefix
        deadline = loop.time() + RETAKE_PATIENCE_S
        for tries in itertools.count(1):
            if self._taken_on is self._connection.transport or self._connection.is_closed:
                return
            try:
                await self._take()
            except LockHeld as held:
                if loop.time() >= deadline:
                    return self._lose(held)
                if tries == 1:  # perhaps its own, on a connection the broker has not yet seen die
                    log.warning("budget lock still held; trying again", extra={"prefix": prefix})
            except Refused as refused:
                return self._lose(refused)
            except Exception as exc:  # the connection went again: the robust connection reconnects
                log.debug("retaking the budget claim failed", exc_info=exc)
            else:
                log.info("budget claim retaken", extra={"prefix": prefix, "attempt": tries})
                continue
            await asyncio.sleep(RETAKE_PAUSE_S)

    def _lose(self, refused: Refused) -> None:
        self.lost = refused
        log.error("budget claim lost; stopping: %s", refused)
        self._on_lost(refused)

    async def _take(self) -> None:
        """Own mark first, then the other mode's: see the module's docstring for why in this order."""
        await self._connection.ready()
        transport = self._connection.transport
        if transport is None:
            raise ConnectionError("broker connection down")
        channel = await transport.connection.channel(publisher_confirms=False)
        try:
            await (self._lock(channel) if self._local else self._mark(channel))
            other = marker_queue if self._local else lock_queue
            if await _exists(transport.connection, other(self._settings.prefix)):
                raise Refused(fleet_present(self._settings) if self._local else local_held(self._settings))
        except BaseException:
            await self._drop(channel)
            raise
        self._channel, self._taken_on = channel, transport

    async def _lock(self, channel: AbstractChannel) -> None:
        try:
            await channel.queue_declare(lock_queue(self._settings.prefix), exclusive=True)
        except ChannelLockedResource:
            raise LockHeld(local_held(self._settings)) from None

    async def _mark(self, channel: AbstractChannel) -> None:
        name = marker_queue(self._settings.prefix)
        await channel.queue_declare(name, auto_delete=True, arguments={"x-expires": MARKER_EXPIRES_MS})
        await channel.basic_consume(name, _ignore, no_ack=True)  # the marker lives while consumed

    async def _drop(self, channel: AbstractChannel) -> None:
        """Delete this worker's lock, if it took one, and close the channel (its marker consumer goes)."""
        if channel.is_closed:
            return
        with contextlib.suppress(Exception):
            if self._local:
                await channel.queue_delete(lock_queue(self._settings.prefix))
            await channel.close()


async def _exists(connection: AbstractConnection, queue: str) -> bool:
    """Whether ``queue`` exists; a passive declare that misses closes its channel, so it has its own."""
    probe = await connection.channel(publisher_confirms=False)
    try:
        await probe.queue_declare(queue, passive=True)
    except ChannelNotFoundEntity:
        return False
    except ChannelLockedResource:  # exclusive to another connection: it exists
        return True
    finally:
        if not probe.is_closed:
            await probe.close()
    return True


async def _ignore(_message: DeliveredMessage) -> None:
    """Nothing is published to the marker; should anything be, it is dropped (no_ack)."""
