"""The in-memory publisher: the real one's signatures, and a record of what it would have sent."""

from __future__ import annotations

import inspect

import pytest

from recalls.producers.config import PublisherConfig
from recalls.producers.publisher import Publisher, QueueFull
from recalls.producers.testing import InMemoryPublisher, Published
from recalls.shared.amqp import PublishFailed, Unroutable
from recalls.shared.contracts import GetCommand
from recalls.shared.validation import InvalidCommand

VIN = "WAUZZZF49HA036784"


@pytest.mark.parametrize("method", ["publish", "publish_many"])
def test_it_has_the_real_publishers_signatures(method: str) -> None:
    assert inspect.signature(getattr(InMemoryPublisher, method)) == inspect.signature(
        getattr(Publisher, method)
    )


async def test_it_records_each_command_as_it_would_be_sent() -> None:
    first, second = GetCommand(vin=VIN.lower()), GetCommand(vin=VIN, correlation_id="batch-1")
    async with InMemoryPublisher() as publisher:
        assert await publisher.publish(first) == first.message_id
        assert await publisher.publish(second, lane="background", reply_to="amq.gen-1") == second.message_id
    assert publisher.published == [
        Published(
            GetCommand(vin=VIN, message_id=first.message_id, issued_at=first.issued_at),
            "live",
            None,
            first.message_id,
        ),
        Published(second, "background", "amq.gen-1", second.message_id),
    ]
    assert publisher.commands == [publisher.published[0].command, second]


async def test_publish_many_records_the_valid_and_reports_the_invalid_in_place() -> None:
    good, bad = GetCommand(vin=VIN), GetCommand(vin="NOT-A-VIN")
    async with InMemoryPublisher.connect(PublisherConfig("amqp://unused.example/")) as publisher:
        results = await publisher.publish_many([bad, good], lane="bulk")
    assert isinstance(results[0], InvalidCommand)
    assert results[1] == good.message_id
    assert publisher.published == [Published(good, "bulk", None, good.message_id)]


async def test_once_closed_it_fails_publishes_as_the_real_one_does() -> None:
    async with InMemoryPublisher() as publisher:
        pass
    with pytest.raises(PublishFailed, match="publisher closed"):
        await publisher.publish(GetCommand(vin=VIN))
    [result] = await publisher.publish_many([GetCommand(vin=VIN)])
    assert isinstance(result, PublishFailed)
    with pytest.raises(InvalidCommand):  # the checks still come first
        await publisher.publish(GetCommand(vin="NOT-A-VIN"))
    assert publisher.published == []


async def test_it_fails_the_next_commands_as_a_broker_would_when_told() -> None:
    good, bad, later = GetCommand(vin=VIN), GetCommand(vin="NOT-A-VIN"), GetCommand(vin=VIN)
    full = QueueFull("the get queue is full")
    async with InMemoryPublisher() as publisher:
        publisher.fail_next(Unroutable("no queue for get"))
        with pytest.raises(Unroutable, match="no queue for get"):
            await publisher.publish(good)
        publisher.fail_next(full, times=2)
        results = await publisher.publish_many([good, bad, later, later])
    assert results[0] is full and results[2] is full  # the invalid one is refused first, as ever
    assert isinstance(results[1], InvalidCommand) and results[3] == later.message_id
    assert publisher.commands == [later]


def test_it_refuses_to_fail_zero_times() -> None:
    with pytest.raises(ValueError, match="times must be 1 or more, not 0"):
        InMemoryPublisher().fail_next(PublishFailed("never"), times=0)
