"""The connection to the store: one async SQLAlchemy engine over PostgreSQL (asyncpg) or SQLite (aiosqlite).

Everything above this module is written once for both.  SQLite is set up so that several processes can
share its file: WAL (readers never block the writer), a busy timeout (a writer waits for the lock
instead of failing), and ``BEGIN IMMEDIATE`` for transactions that write, so a transaction that reads
before it writes cannot lose its snapshot to another process's commit.

:meth:`Database.run` runs a whole transaction written as one synchronous function.  On SQLite it runs
on a thread of the store's own, over a plain ``sqlite3`` connection, so the event loop waits once per
transaction rather than once per statement, fetch and commit as it does through aiosqlite: the
commands' hot path (the ledger's last looks and writes) costs one wake-up of the loop.  On PostgreSQL
it runs the same function over the async engine (asyncpg), whose round trips cost no thread.

The database URL's password
never reaches a log line or an error: the URL is kept as a ``SecretStr`` and errors name only the
variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from recalls.shared.settings import Settings
from recalls.shared.store.migrations import MIGRATIONS, apply_migrations
from recalls.shared.store.postgres_tls import TlsSettingError, split_tls

_SQLITE_BUSY_MS = 30_000
_SQLITE_THREADS = 2  # a write and a read at once: WAL lets a reader go beside the writer
_READ_ONLY = "recalls_read_only"
T = TypeVar("T")


class StoreError(Exception):
    """The store's configuration is unusable (the message never contains the URL's password)."""


class StoreMissing(StoreError):
    """There is no store where the settings point (:meth:`Database.connect_existing` creates none)."""


class StoreOutdated(StoreError):
    """The store lacks migrations this program needs (:meth:`Database.connect_existing` applies none)."""


def database_url(settings: Settings) -> URL:
    """The async SQLAlchemy URL the settings describe."""
    if settings.database_url is None:
        return URL.create("sqlite+aiosqlite", database=str(settings.sqlite_path))
    try:
        url = make_url(settings.database_url.get_secret_value())
    except (ArgumentError, ValueError):
        # SQLAlchemy's message quotes the whole URL, password included.
        raise StoreError("RECALLS_DATABASE_URL: not a database URL") from None
    backend = url.drivername.split("+", 1)[0]
    if backend not in {"postgresql", "postgres"}:
        raise StoreError(f"RECALLS_DATABASE_URL: must be a postgresql:// URL, not {backend}://")
    return url.set(drivername="postgresql+asyncpg")


class StoreUnavailable(StoreError):
    """The store did not answer (the driver's own message may quote connection details: only its type)."""

    @classmethod
    def of(cls, settings: Settings, error: BaseException) -> StoreUnavailable:
        return cls(f"the store at {store_location(settings)} is unavailable ({type(error).__name__})")


def store_location(settings: Settings) -> str:
    """Where the settings put the store, for a message: a file, or a PostgreSQL database (no password)."""
    if settings.database_url is None:
        return f"{settings.sqlite_path.absolute()} (RECALLS_SQLITE_PATH)"
    url = database_url(settings)
    return f"PostgreSQL database {url.database!r} on {url.host}:{url.port or 5432} (RECALLS_DATABASE_URL)"


class Database:
    """An engine plus the store's transaction conventions.

    Open with :meth:`connect` (a process that works on the store: migrated first where
    :func:`migrates_on_start`, otherwise checked to be at this version's schema), :meth:`opened` (as it
    is: ``recalls migrate``), or :meth:`connect_existing` (read-only commands: a store that is not there yet
    is an error).
    """

    def __init__(self, engine: AsyncEngine, direct: Engine | None = None) -> None:
        self._engine = engine
        # SQLite has one writer at a time; a second one waits in its busy handler, which sleeps in
        # steps of up to 100 ms.  Writers of this process queue here instead and go in turn at once.
        self._one_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._direct = direct  # SQLite: the synchronous engine :meth:`run` uses on its own threads
        self._threads = (
            ThreadPoolExecutor(_SQLITE_THREADS, thread_name_prefix="store") if direct is not None else None
        )

    @classmethod
    async def open(cls, settings: Settings) -> Database:
        url = database_url(settings)
        if url.drivername.startswith("sqlite"):
            if url.database:
                await asyncio.to_thread(_create_private, settings.sqlite_path)
            return cls.sqlite(url)
        return cls.postgresql(url)

    @classmethod
    def postgresql(cls, url: URL) -> Database:
        """A store in the PostgreSQL database of ``url`` (an asyncpg URL; libpq's ``sslmode`` and the like
        are honoured, see :mod:`recalls.shared.store.postgres_tls`)."""
        try:
            plain, tls = split_tls(url)
        except TlsSettingError as exc:
            raise StoreError(f"RECALLS_DATABASE_URL: {exc}") from None
        return cls(create_async_engine(plain, pool_pre_ping=True, hide_parameters=True, connect_args=tls))

    @classmethod
    def sqlite(cls, url: URL) -> Database:
        """A store in the SQLite file of ``url`` (an aiosqlite URL)."""
        direct = create_engine(
            url.set(drivername="sqlite+pysqlite"),
            hide_parameters=True,
            pool_size=_SQLITE_THREADS,
            connect_args={"check_same_thread": False},
        )
        engine = create_async_engine(url, hide_parameters=True)
        for each in (direct, engine.sync_engine):
            event.listen(each, "connect", _configure_sqlite)
            event.listen(each, "begin", _begin_sqlite)
        return cls(engine, direct)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, settings: Settings) -> AsyncIterator[Database]:
        """Open the store as it is (SQLite: the file is created), and close it on the way out."""
        database = await cls.open(settings)
        try:
            yield database
        finally:
            await database.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, settings: Settings) -> AsyncIterator[Database]:
        """Open and :meth:`prepare` the store, and close it on the way out."""
        database = await cls.open(settings)
        try:
            await database.prepare(settings)
            yield database
        finally:
            await database.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect_existing(cls, settings: Settings) -> AsyncIterator[Database]:
        """Open the store only if it is there and migrated, and close on the way out; create nothing.

        Raises :class:`StoreMissing` when the SQLite file does not exist or the database holds no store,
        :class:`StoreOutdated` when its schema lacks migrations (``recalls migrate`` applies them),
        :class:`StoreUnavailable` when it does not answer.
        """
        url = database_url(settings)
        if url.drivername.startswith("sqlite"):
            path = settings.sqlite_path.absolute()
            if not path.is_file():
                raise StoreMissing(_no_store(settings))
            # mode=rw: should the file go between the check and the connection, SQLite does not create it.
            url = url.set(database=f"file:{quote(str(path))}", query={"uri": "true", "mode": "rw"})
            database = cls.sqlite(url)
        else:
            database = cls.postgresql(url)
        try:
            try:
                await database._check_schema(settings)
            except (SQLAlchemyError, OSError) as exc:
                raise StoreUnavailable.of(settings, exc) from None
            yield database
        finally:
            await database.close()

    async def prepare(self, settings: Settings) -> None:
        """Make the store ready for this version's work: migrate it where :func:`migrates_on_start`,
        otherwise raise :class:`StoreMissing` or :class:`StoreOutdated` naming ``recalls migrate``."""
        if migrates_on_start(settings):
            await self.migrate()
        else:
            await self._check_schema(settings)

    async def _check_schema(self, settings: Settings) -> None:
        async with self.reading() as connection:
            if not await connection.run_sync(lambda sync: inspect(sync).has_table("schema_migrations")):
                raise StoreMissing(_no_store(settings))
            versions = await connection.execute(text("SELECT version FROM schema_migrations"))
            applied: set[int] = set(versions.scalars())
        missing = {migration.version for migration in MIGRATIONS} - applied
        if missing:
            raise StoreOutdated(
                f"the store at {store_location(settings)} lacks schema version {min(missing)}; "
                "run `recalls migrate` first"
            )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on error."""
        async with contextlib.AsyncExitStack() as stack:
            if self._one_writer is not None:
                await stack.enter_async_context(self._one_writer)
            yield await stack.enter_async_context(self._engine.begin())

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (on SQLite it takes no write lock)."""
        async with self._engine.connect() as connection:
            await connection.execution_options(**{_READ_ONLY: True})
            async with connection.begin():
                yield connection

    async def run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """``work``'s result, run in one transaction that commits on success (see the module's docstring).

        ``work`` must not block on anything but the store: on SQLite it holds one of its threads.  On
        PostgreSQL a read runs statement by statement: read committed sees each statement's own snapshot
        in a transaction or out of one, and BEGIN and COMMIT would cost two round trips more.
        """
        if self._direct is None:
            return await self._run_on_server(work, write)
        loop = asyncio.get_running_loop()
        call = partial(_in_transaction, self._direct, work, write)
        if self._one_writer is None or not write:
            return await loop.run_in_executor(self._threads, call)
        async with self._one_writer:
            return await loop.run_in_executor(self._threads, call)

    async def _run_on_server(self, work: Callable[[Connection], T], write: bool) -> T:
        if write:
            async with self.writing() as connection:
                return await connection.run_sync(work)
        async with self._engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return await autocommit.run_sync(work)

    async def ping(self) -> None:
        """Raises if the store does not answer a trivial query (readiness checks)."""
        async with self.reading() as connection:
            await connection.execute(text("SELECT 1"))

    async def migrate(self) -> list[int]:
        """Apply the migrations the store lacks, in one transaction; return their versions."""
        async with self.writing() as connection:
            return await apply_migrations(connection)

    async def close(self) -> None:
        await self._engine.dispose()
        if self._direct is not None and self._threads is not None:
            await asyncio.get_running_loop().run_in_executor(self._threads, self._direct.dispose)
            self._threads.shutdown(wait=False)


def migrates_on_start(settings: Settings) -> bool:
    """Whether a process that works on the store migrates it at start: as RECALLS_MIGRATE_ON_START says,
    else only the embedded SQLite store, which belongs to the one host that runs it."""
    if settings.migrate_on_start is not None:
        return settings.migrate_on_start
    return settings.database_url is None


def _no_store(settings: Settings) -> str:
    hint = "" if settings.database_url is not None else ", or set RECALLS_DATABASE_URL"
    return f"no store at {store_location(settings)}; run `recalls migrate` first{hint}"


def _create_private(path: Path) -> None:
    """Make the SQLite file, if it is not there yet, readable by its owner only (the ledger is the
    manufacturer's record; SQLite gives its -wal and -shm files the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _in_transaction(engine: Engine, work: Callable[[Connection], T], write: bool) -> T:
    with engine.connect() as connection, connection.execution_options(**{_READ_ONLY: not write}).begin():
        return work(connection)


def _configure_sqlite(dbapi_connection: Any, _record: object) -> None:
    # The driver's own implicit BEGIN is turned off; _begin_sqlite issues the right one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit the worker acted on survives a power loss; under WAL, NORMAL may lose the last ones.
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
