"""Running a command's work against the store: the CLI's one routine for the store's failures.

Read-only commands open the store as it is (:meth:`Database.connect_existing` neither creates nor
migrates one); commands that write open it as the fleet does.  No message shows the database password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from recalls.cli.errors import InputError, ServiceError
from recalls.shared.settings import Settings
from recalls.shared.store.database import Database, StoreError, StoreMissing, StoreOutdated, StoreUnavailable

_T = TypeVar("_T")


def with_store(
    settings: Settings, work: Callable[[Database], Awaitable[_T]], *, read_only: bool = True
) -> _T:
    """Run ``work`` against the store, turning its failures into one error line."""
    return asyncio.run(in_store(settings, work, read_only=read_only))


async def in_store(
    settings: Settings, work: Callable[[Database], Awaitable[_T]], *, read_only: bool = True
) -> _T:
    """:func:`with_store` for a command already running its own event loop."""
    connect = Database.connect_existing if read_only else Database.connect
    try:
        async with connect(settings) as db:
            return await work(db)
    except (StoreMissing, StoreOutdated, StoreUnavailable) as exc:  # nothing there yet, or unreachable
        raise ServiceError(str(exc)) from None
    except StoreError as exc:  # RECALLS_DATABASE_URL is no database URL
        raise InputError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:  # the store went away after it answered
        raise ServiceError(str(StoreUnavailable.of(settings, exc))) from None
