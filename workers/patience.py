"""What a worker waits for at start: its store, RabbitMQ and (fleet mode) Redis, until they answer.

A worker started before them waits rather than exiting: an orchestrator would only crash-loop it.  Each
is tried, in that order, then tried again after 0.5 s doubling to 30 s (less up to a quarter, so a
restarted fleet does not knock in step), with one JSON line per failed try naming the service, the
attempt, the delay and the error (its URL passwords removed).  Refusals are retried the same way (a
wrong password, ACCESS_REFUSED, a missing database): a broker user or a database is often provisioned
after the workers start, and the line says what is wrong meanwhile.  Only a store URL that is not one
at all (:class:`~recalls.shared.store.database.StoreError`) ends the start.  SIGTERM during the wait ends it
too (:class:`Stopped`), cleanly.
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

from aio_pika.abc import AbstractRobustConnection

from recalls.shared.amqp import connect
from recalls.shared.broker_urls import BrokerUrls
from recalls.shared.redis_client import redis_client
from recalls.shared.redis_urls import redis_passwords
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database, database_url

log = logging.getLogger("recalls.worker.startup")
T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
ATTEMPT_TIMEOUT_S = 15.0  # above the broker's own connect timeout, so that one ends its attempt
BROKER_CONNECT_TIMEOUT_S = 10.0
# aiormq logs every refused connect at ERROR; the retry line says it once, in the product's words.
_CONNECT_LOGGER = "aiormq.connection"


class Stopped(Exception):
    """A stop was requested while waiting for a service."""


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
    passwords = [urlsplit(settings.database_url.get_secret_value()).password] if settings.database_url else []
    found = {form for p in passwords if p for form in (p, unquote(p))}
    found |= set(BrokerUrls.parse(settings.amqp_url.get_secret_value()).passwords())
    if settings.redis_url is not None:
        found |= set(redis_passwords(settings.redis_url.get_secret_value()))
    return sorted(found, key=len, reverse=True)


@contextlib.asynccontextmanager
async def store_answering(settings: Settings, patience: Patience) -> AsyncIterator[Database]:
    """The store, once it answers a query; prepared (:meth:`Database.prepare`), and closed on the way out."""
    database_url(settings)  # a URL that is no database URL raises StoreError now: no wait mends it
    db = await patience.until("store", lambda: _open_store(settings))
    try:
        await db.prepare(settings)
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
    if settings.redis_url is None:
        return

    async def ping() -> None:
        client = redis_client(settings)
        try:
            await client.ping()
        finally:
            await client.aclose()

    await patience.until("redis", ping)


async def broker_answering(settings: Settings, patience: Patience, name: str) -> AbstractRobustConnection:
    """A robust connection to RabbitMQ, once it accepts one."""
    with _quiet(_CONNECT_LOGGER):
        return await patience.until(
            "rabbitmq",
            lambda: connect(
                settings.amqp_url.get_secret_value(), name=name, connect_timeout=BROKER_CONNECT_TIMEOUT_S
            ),
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
