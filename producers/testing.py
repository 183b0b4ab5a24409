"""A publisher for other systems' tests: it checks commands as the real one does and keeps them in memory.

Code that publishes through :class:`recalls.Publisher` can be tested without RabbitMQ by
handing it an :class:`InMemoryPublisher` instead::

    async with InMemoryPublisher() as publisher:
        await handle_order(order, publisher)
    assert [p.command.vin for p in publisher.published] == ["WAUZZZF49HA036784"]

It refuses exactly what the real publisher refuses, with the same exception and message, because both
run the same checks (:func:`recalls.producers.publisher.checked_command`); what it accepts it records as
the real one would send it (VIN upper-cased) in :attr:`InMemoryPublisher.published`.  What only a broker
can cause (``Unroutable``, ``QueueFull``, ``PublishFailed``) it raises when a test asks it to, with
:meth:`InMemoryPublisher.fail_next`, so the code's handling of them can be tested too; and
``PublishFailed`` once it is closed, as the real one does after its connection closes::

    publisher.fail_next(QueueFull("the create queue is full"))
    with pytest.raises(QueueFull):
        await handle_order(order, publisher)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

from recalls.producers.config import PublisherConfig
from recalls.producers.publisher import (
    DEFAULT_MAX_IN_FLIGHT,
    PublishResult,
    checked_command,
    checked_commands,
)
from recalls.shared.amqp import PublishFailed
from recalls.shared.contracts import Command, Lane
from recalls.shared.validation import InvalidCommand


@dataclass(frozen=True)
class Published:
    """One command the publisher took: as it would have been sent, and where to."""

    command: Command
    lane: Lane
    reply_to: str | None
    message_id: str


class InMemoryPublisher:
    """Stands in for :class:`~recalls.Publisher`: same ``publish`` and ``publish_many``.

    Usable as it is, as an async context manager, or through :meth:`connect` where the code under
    test calls ``Publisher.connect(config)``.  Publishing after the context has closed raises
    :class:`~recalls.PublishFailed`.
    """

    def __init__(self) -> None:
        self.published: list[Published] = []
        self._closed = False
        self._failures: list[PublishFailed] = []

    @classmethod
    @asynccontextmanager
    async def connect(cls, config: PublisherConfig | None = None) -> AsyncIterator[InMemoryPublisher]:
        """As :meth:`Publisher.connect <recalls.Publisher.connect>`; ``config`` is not used."""
        async with cls() as publisher:
            yield publisher

    async def __aenter__(self) -> InMemoryPublisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed = True

    def fail_next(self, error: PublishFailed, *, times: int = 1) -> None:
        """The next ``times`` valid commands fail with ``error`` instead of being recorded.

        ``publish`` raises it; ``publish_many`` reports it in those commands' places, as the real one
        reports a command the broker returned or refused.  Invalid commands are refused before, as ever.
        """
        if times < 1:
            raise ValueError(f"times must be 1 or more, not {times}")
        self._failures += [error] * times

    @property
    def commands(self) -> list[Command]:
        """The commands taken so far, in order."""
        return [published.command for published in self.published]

    async def publish(self, command: Command, *, lane: Lane = "live", reply_to: str | None = None) -> str:
        """As :meth:`Publisher.publish <recalls.Publisher.publish>`, recording the command."""
        checked = checked_command(command, lane=lane, reply_to=reply_to)
        self._record(checked, lane, reply_to)
        return checked.message_id

    async def publish_many(
        self,
        commands: Iterable[Command],
        *,
        lane: Lane = "live",
        reply_to: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        validated: bool = False,
    ) -> list[PublishResult]:
        """As :meth:`Publisher.publish_many <recalls.Publisher.publish_many>`."""
        checked = checked_commands(
            commands, lane=lane, reply_to=reply_to, max_in_flight=max_in_flight, validated=validated
        )
        results: list[PublishResult] = []
        for item in checked:
            if isinstance(item, InvalidCommand):
                results.append(item)
                continue
            try:
                self._record(item, lane, reply_to)
            except PublishFailed as exc:
                results.append(exc)
            else:
                results.append(item.message_id)
        return results

    def _record(self, command: Command, lane: Lane, reply_to: str | None) -> None:
        if self._closed:
            raise PublishFailed(f"publisher closed before {command.message_id} was sent")
        if self._failures:
            raise self._failures.pop(0)
        self.published.append(Published(command, lane, reply_to, command.message_id))
