"""The in-memory publisher refuses what the real one refuses (on the real broker), with the same error."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.producers.testing import InMemoryPublisher
from recalls.shared.amqp import PublishFailed
from recalls.shared.contracts import Command, CreateCommand, DeleteCommand, FixCommand, GetCommand
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology

pytestmark = pytest.mark.integration

VIN = "WAUZZZF49HA036784"
AnyPublisher = Publisher | InMemoryPublisher
Attempt = Callable[[AnyPublisher], Awaitable[object]]


def create(*, vin: str = VIN, reference: str = "RC-1") -> CreateCommand:
    return CreateCommand(
        vin=vin, manufacturer_campaign_reference=reference, recall_campaign_start_date=dt.date.today()
    )


def broken(command: Command, **fields: object) -> Command:
    """``command`` with fields set past its constructor's checks, as careless code can."""
    for name, value in fields.items():
        setattr(command, name, value)
    return command


def fix() -> FixCommand:
    return FixCommand(vin=VIN, manufacturer_campaign_reference="RC-1", rectification_date=dt.date.today())


def publish(command: Command, **options: object) -> Attempt:
    return lambda publisher: publisher.publish(command, **options)  # type: ignore[arg-type]


def publish_many(commands: list[Command], **options: object) -> Attempt:
    return lambda publisher: publisher.publish_many(commands, **options)  # type: ignore[arg-type]


REFUSED: dict[str, Attempt] = {
    "short VIN": publish(create(vin="WAUZZZF49HA0367")),
    "VIN with punctuation": publish(GetCommand(vin="NOT-A-VIN")),
    "empty message_id": publish(GetCommand(vin=VIN, message_id="")),
    "message_id too long": publish(GetCommand(vin=VIN, message_id="x" * 129)),
    "no campaign reference": publish(
        broken(DeleteCommand(vin=VIN, dvsa_campaign_reference="R/2022/123"), dvsa_campaign_reference=None)
    ),
    "missing rectification date": publish(broken(fix(), rectification_date=None)),
    "unknown repair status": publish(broken(fix(), repair_status="BROKEN")),
    "bad DVSA reference": publish(DeleteCommand(vin=VIN, dvsa_campaign_reference="R/22/1")),
    "bad manufacturer reference": publish(create(reference="RC 1")),
    "issued_at without a time zone": publish(GetCommand(vin=VIN, issued_at=dt.datetime(2026, 1, 5, 9))),
    "bad lane": publish(GetCommand(vin=VIN), lane="Live"),
    "foreign reply_to": publish(GetCommand(vin=VIN), reply_to="replies"),
    "the fleet's ledger as reply_to": publish(GetCommand(vin=VIN), reply_to="recalls.ledger"),
    "many, bad lane": publish_many([GetCommand(vin=VIN)], lane="bulk "),
    "many, foreign reply_to": publish_many([GetCommand(vin=VIN)], reply_to="amq.direct"),
    "many, no window": publish_many([GetCommand(vin=VIN)], max_in_flight=0),
}


async def refusal(publisher: AnyPublisher, attempt: Attempt) -> tuple[type[Exception], str]:
    try:
        await attempt(publisher)
    except Exception as exc:  # what is compared is which exception, whatever it is
        return type(exc), str(exc)
    raise AssertionError(f"{type(publisher).__name__} took it")


@pytest.fixture
async def real(
    settings: Settings, names: Topology, connection: AbstractConnection
) -> AsyncIterator[Publisher]:
    """The real publisher, declaring nothing, on a broker holding only ``<prefix>.commands``.

    With no queue anywhere, a command that got past the checks would come back Unroutable rather than
    be refused, so the comparison would fail rather than pass by accident.
    """
    async with connection.channel() as channel:
        await channel.declare_exchange(names.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    async with Publisher.connect(replace(publisher_config(settings), declare=False)) as publisher:
        yield publisher


@pytest.mark.parametrize("case", REFUSED)
async def test_the_double_refuses_what_the_real_publisher_refuses(real: Publisher, case: str) -> None:
    async with InMemoryPublisher() as double:
        expected = await refusal(real, REFUSED[case])
        assert await refusal(double, REFUSED[case]) == expected
    assert double.published == []


async def test_publish_many_reports_the_same_invalid_commands_in_the_same_places(real: Publisher) -> None:
    commands: list[Command] = [GetCommand(vin="NOT-A-VIN"), create(vin="WAUZZZF49HA0367"), fix()]
    real_results = await real.publish_many(commands[:2])
    async with InMemoryPublisher() as double:
        double_results = await double.publish_many(commands)
    assert [(type(r), str(r)) for r in real_results] == [(type(r), str(r)) for r in double_results[:2]]
    assert double_results[2] == commands[2].message_id
    assert double.commands == [commands[2]]


async def test_after_closing_both_fail_a_publish_with_publish_failed(
    settings: Settings, real: Publisher
) -> None:
    async with Publisher.connect(replace(publisher_config(settings), declare=False)) as closed:
        pass
    async with InMemoryPublisher() as double:
        pass
    for publisher in (closed, double):
        with pytest.raises(PublishFailed):
            await publisher.publish(GetCommand(vin=VIN))
