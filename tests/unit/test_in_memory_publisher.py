"""The in-memory publisher: the real one's signatures, and a record of what it would have sent."""

from __future__ import annotations

import inspect

import pytest

from recalls.producers.config import PublisherConfig
from recalls.producers.publisher import Publisher
from recalls.producers.testing import InMemoryPublisher, Published
from recalls.shared.amqp import PublishFailed
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
