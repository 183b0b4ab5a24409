"""The publisher for code without an event loop: WSGI apps, Django views, scripts, Celery tasks.

:class:`SyncPublisher` owns one event loop on a daemon thread and a :class:`~recalls.Publisher`
on it; each call hands its work to that loop and blocks until the broker has confirmed::

    with SyncPublisher(PublisherConfig.from_env(name="orders-web")) as publisher:
        message_id = publisher.publish(command, lane="live")

Any number of threads may publish through one at once (a WSGI server's worker threads): open it once
per process, for instance when the app starts, rather than once per request.  Exceptions reach the
caller unchanged: :class:`~recalls.InvalidCommand`, ``ValueError``,
:class:`~recalls.Unroutable`, :class:`~recalls.QueueFull`,
:class:`~recalls.PublishFailed`, and from opening :class:`~recalls.BrokerUnreachable` and
:class:`~recalls.TopologyError`.  Code that runs in an event loop uses ``Publisher`` itself:
blocking that loop's thread until a confirm arrives would stall everything else on it, so
``SyncPublisher`` refuses to be called there.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar

from recalls.producers.config import PublisherConfig
from recalls.producers.publisher import DEFAULT_MAX_IN_FLIGHT, Publisher, PublishResult
from recalls.shared.contracts import Command, Lane

_T = TypeVar("_T")


class SyncPublisher:
    """A :class:`~recalls.Publisher` for threads without an event loop; see the module."""

    def __init__(self, config: PublisherConfig) -> None:
        self._config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._context: AbstractAsyncContextManager[Publisher] | None = None
        self._publisher: Publisher | None = None
        self._pid = 0
        self._lock = threading.Lock()  # guards _loop against a close while other threads publish

    def __enter__(self) -> SyncPublisher:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Start the loop's thread and connect; raise as ``Publisher.connect`` does, leaving none behind."""
        _refuse_in_event_loop("open")
        if self._loop is not None:
            raise RuntimeError("SyncPublisher is already open")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"SyncPublisher {self._config.name}", daemon=True
        )
        thread.start()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()
        self._context = Publisher.connect(self._config)
        try:
            self._publisher = self._call(self._context.__aenter__())
        except BaseException:
            self._context = None
            self._stop()
            raise

    def close(self) -> None:
        """Close the connection and stop the loop's thread; closing a closed one does nothing."""
        _refuse_in_event_loop("close")
        if self._loop is None:
            return
        try:
            if self._context is not None and self._pid == os.getpid():
                self._call(self._context.__aexit__(None, None, None))
        finally:
            self._context = None
            self._publisher = None
            self._stop()

    def publish(self, command: Command, *, lane: Lane = "live", reply_to: str | None = None) -> str:
        """As :meth:`Publisher.publish <recalls.Publisher.publish>`, blocking until confirmed."""
        return self._call(self._open_publisher().publish(command, lane=lane, reply_to=reply_to))

    def publish_many(
        self,
        commands: Iterable[Command],
        *,
        lane: Lane = "live",
        reply_to: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        validated: bool = False,
    ) -> list[PublishResult]:
        """As :meth:`Publisher.publish_many <recalls.Publisher.publish_many>`, blocking."""
        publisher = self._open_publisher()
        many = publisher.publish_many(
            commands, lane=lane, reply_to=reply_to, max_in_flight=max_in_flight, validated=validated
        )
        return self._call(many)

    def _open_publisher(self) -> Publisher:
        _refuse_in_event_loop("publish")
        if self._publisher is None:
            raise RuntimeError("SyncPublisher is not open: publish within `with SyncPublisher(config) as p:`")
        if self._pid != os.getpid():
            raise RuntimeError(
                "SyncPublisher was opened in another process (before a fork): open one in each process"
            )
        return self._publisher

    def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run ``work`` on the loop's thread and return its result or raise its exception, unchanged.

        A call in flight when another thread closes the publisher raises ``CancelledError``.
        """
        with self._lock:
            if self._loop is None:
                work.close()
                raise RuntimeError("SyncPublisher is closed")
            future = asyncio.run_coroutine_threadsafe(work, self._loop)
        return future.result()

    def _stop(self) -> None:
        """Cancel what is left on the loop, stop it and its thread, and close it."""
        with self._lock:  # no call is handed to the loop after this
            loop, thread = self._loop, self._thread
            self._loop = None
            self._thread = None
        if loop is None or thread is None:
            return
        if thread.is_alive():  # not after a fork, which leaves the thread behind in the parent
            asyncio.run_coroutine_threadsafe(_wind_down(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        loop.close()


async def _wind_down() -> None:
    """Cancel what is left on the loop (a robust connection's reconnect, say) and close async generators."""
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


def _refuse_in_event_loop(action: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"SyncPublisher cannot {action} from a thread that runs an event loop: it would block the loop "
        "until the broker answers; use `async with Publisher.connect(config)` there"
    )
