"""A delivery's handler outlives the callback task the AMQP library cancels when its channel closes.

No broker here: the library's side is played by a task that is cancelled, as aiormq cancels the tasks
of a channel it closes.  The broker-loss scenario of the fault suite shows the same against RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from recalls.workers.inflight import InFlight

MESSAGE = cast(AbstractIncomingMessage, object())  # the handlers below never look at it


async def test_a_handler_finishes_when_its_callback_task_is_cancelled() -> None:
    sent, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handle(_: AbstractIncomingMessage) -> None:
        sent.set()  # DVSA has the call
        await release.wait()  # its answer is on the way
        finished.set()  # written to the ledger

    in_flight = InFlight()
    callback = asyncio.create_task(in_flight.tracking(handle)(MESSAGE))
    await sent.wait()
    callback.cancel()  # the channel closed
    with pytest.raises(asyncio.CancelledError):
        await callback
    assert len(in_flight) == 1  # still in hand: a stop would wait for it
    release.set()
    assert await in_flight.drain(grace=5) == 0  # it finished of its own accord
    assert finished.is_set()
    assert len(in_flight) == 0


async def test_a_handler_that_fails_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def handle(_: AbstractIncomingMessage) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="recalls.worker"):
        await InFlight().tracking(handle)(MESSAGE)
    assert [r.getMessage() for r in caplog.records] == ["a delivery's handler failed"]


async def test_drain_cancels_what_outlives_the_grace() -> None:
    started = asyncio.Event()

    async def handle(_: AbstractIncomingMessage) -> None:
        started.set()
        await asyncio.Event().wait()  # never answers

    in_flight = InFlight()
    callback = asyncio.create_task(in_flight.tracking(handle)(MESSAGE))
    await started.wait()
    assert await in_flight.drain(grace=0.05) == 1
    assert len(in_flight) == 0
    with pytest.raises(asyncio.CancelledError):
        await callback
