"""Running a command's work against the store: the CLI's one routine for the store's failures.

Read-only commands open the store as it is (:meth:`Database.connect_existing` neither creates nor
migrates one); commands that write open it as the fleet does (:meth:`Database.connect`); ``recalls
migrate`` opens it whatever its schema (:meth:`Database.opened`).  No message shows the database password.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from recalls.cli.errors import InputError, ServiceError
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database, StoreError, StoreMissing, StoreOutdated, StoreUnavailable

_T = TypeVar("_T")


Opening = Callable[[Settings], AbstractAsyncContextManager[Database]]
Work = Callable[[Database], Awaitable[_T]]


def with_store(settings: Settings, work: Work[_T], *, opening: Opening = Database.connect_existing) -> _T:
    """Run ``work`` against the store opened by ``opening``, turning its failures into one error line."""
    return asyncio.run(in_store(settings, work, opening=opening))


async def in_store(settings: Settings, work: Work[_T], *, opening: Opening = Database.connect_existing) -> _T:
    """:func:`with_store` for a command already running its own event loop."""
    with store_errors(settings):
        try:
            async with opening(settings) as db:
                return await work(db)
        except OSError as exc:  # SQLite's file went away after it answered
            raise ServiceError(str(StoreUnavailable.of(settings, exc))) from None


@contextlib.contextmanager
def store_errors(settings: Settings) -> Iterator[None]:
    """The store's failures as the CLI's errors: one line, no password (also around ``recalls api``)."""
    try:
        yield
    except (StoreMissing, StoreOutdated, StoreUnavailable) as exc:  # nothing there yet, or unreachable
        raise ServiceError(str(exc)) from None
    except StoreError as exc:  # RECALLS_DATABASE_URL is no database URL
        raise InputError(str(exc)) from None
    except SQLAlchemyError as exc:  # the store went away after it answered
        raise ServiceError(str(StoreUnavailable.of(settings, exc))) from None
