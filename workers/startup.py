"""What a worker must hold before it consumes: services that answer, and the prefix's one rate budget.

**Services.**  A worker started before its store, RabbitMQ or Redis (fleet mode) answers waits for
them, in that order, rather than exiting: an orchestrator would only crash-loop it.  Each is tried, then
tried again after 0.5 s doubling to 30 s (less up to a quarter, so a restarted fleet does not knock in
step), with one JSON line per failed try naming the service, the attempt, the delay and the error (its
URL passwords removed).  Refusals are retried the same way (a wrong password, ACCESS_REFUSED, a missing
database): a broker user or a database is often provisioned after the workers start, and the line says
what is wrong meanwhile.  Only a store URL that is not one at all (:class:`StoreError`) ends the start.
SIGTERM during the wait ends it too (:class:`Stopped`), cleanly.

**Budget.**  In local mode (no ``RECALLS_REDIS_URL``) a worker keeps DVSA's 25/s in its own process, so
a second worker on the prefix would double the rate.  A local worker therefore holds a lock in the
broker, the exclusive queue ``<prefix>.worker.local`` (RabbitMQ refuses it to a second connection with
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
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from aio_pika.abc import AbstractRobustConnection, UnderlayConnection
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity
from redis import asyncio as aioredis

from shared.amqp import connect
from shared.settings import Settings
from shared.store.database import Database, database_url

log = logging.getLogger("recalls.worker.startup")
T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
ATTEMPT_TIMEOUT_S = 15.0  # above the broker's own connect timeout, so that one ends its attempt
BROKER_CONNECT_TIMEOUT_S = 10.0
RETAKE_PATIENCE_S = 40.0  # the broker notices a dead connection within about three 10 s heartbeats
RETAKE_PAUSE_S = 1.0
MARKER_EXPIRES_MS = 60_000
# aiormq logs every refused connect at ERROR; the retry line says it once, in the product's words.
_CONNECT_LOGGER = "aiormq.connection"


class Stopped(Exception):
    """A stop was requested while waiting for a service."""


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


def backoff(attempt: int) -> float:
    """The pause after failed try ``attempt`` (1, 2, ...): 0.5 s doubling to 30 s, less up to a quarter."""
    nominal = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** min(attempt - 1, 16))
    return nominal * random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not a secret


class Patience:
    """Tries a service until it answers, pausing ever longer; a stop request ends the wait."""

    def __init__(self, settings: Settings, stopping: asyncio.Event) -> None:
        self._passwords = _url_passwords(settings)
        self._stopping = stopping

    async def until(self, service: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """What ``attempt`` returns once it succeeds; :class:`Stopped` if stopped first."""
        for tries in itertools.count(1):
            try:
                answer = await self._unless_stopped(attempt())
            except Stopped:
                raise
            except Exception as exc:
                delay = backoff(tries)
                log.warning(
                    "%s not answering; trying again",
                    service,
                    extra={"service": service, "attempt": tries, "retry_in_s": round(delay, 2)}
                    | {"error": self._reason(exc)},
                )
                await self._pause(delay)
                continue
            if tries > 1:
                log.info("%s answering", service, extra={"service": service, "attempt": tries})
            return answer
        raise AssertionError("unreachable")  # itertools.count never ends

    async def _unless_stopped(self, attempt: Awaitable[T]) -> T:
        task = asyncio.ensure_future(attempt)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop}, timeout=ATTEMPT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            if self._stopping.is_set():
                raise Stopped
            raise TimeoutError(f"no answer within {ATTEMPT_TIMEOUT_S:g} s")
        return task.result()

    async def _pause(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return
        raise Stopped

    def _reason(self, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        for password in self._passwords:
            text = text.replace(password, "***")
        return text


def _url_passwords(settings: Settings) -> list[str]:
    """The passwords in the service URLs, raw and decoded, so that no error text can carry one."""
    urls = [settings.amqp_url, settings.redis_url, settings.database_url]
    passwords = [urlsplit(url.get_secret_value()).password for url in urls if url is not None]
    return sorted({form for p in passwords if p for form in (p, unquote(p))}, key=len, reverse=True)


@contextlib.asynccontextmanager
async def store_answering(settings: Settings, patience: Patience) -> AsyncIterator[Database]:
    """The store, once it answers a query; migrated, and closed on the way out."""
    database_url(settings)  # a URL that is no database URL raises StoreError now: no wait mends it
    db = await patience.until("store", lambda: _open_store(settings))
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()


async def _open_store(settings: Settings) -> Database:
    db = await Database.open(settings)
    try:
        await db.ping()
    except BaseException:
        await db.close()
        raise
    return db


async def redis_answering(settings: Settings, patience: Patience) -> None:
    """In fleet mode, return once Redis answers a PING (the limiter's own client connects lazily)."""
    url = settings.redis_url
    if url is None:
        return

    async def ping() -> None:
        client = aioredis.Redis.from_url(url.get_secret_value(), socket_timeout=2, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    await patience.until("redis", ping)


async def broker_answering(settings: Settings, patience: Patience, name: str) -> AbstractRobustConnection:
    """A robust connection to RabbitMQ, once it accepts one."""
    with _quiet(_CONNECT_LOGGER):
        return await patience.until(
            "rabbitmq", lambda: connect(settings, name, connect_timeout=BROKER_CONNECT_TIMEOUT_S)
        )


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


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
