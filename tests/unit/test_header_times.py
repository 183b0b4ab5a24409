"""Times the workers put in message headers survive AMQP's table encoding, and only the fleet's are read."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from pamqp import decode, encode

from recalls.workers.attempts import Attempts


def test_first_seen_survives_the_wire_to_the_second() -> None:
    now = time.time()
    sent = Attempts(count=2, first_seen=now, maybe_applied=False).headers()
    _, received = decode.field_table(encode.field_table(sent))  # type: ignore[arg-type]
    first_seen = received["x-first-seen"]
    assert isinstance(first_seen, int | float)
    assert abs(first_seen - now) <= 0.5


@pytest.mark.parametrize("header", [2**62, 6.7e16, -5, float("inf"), float("nan"), True, "1700000000"])
def test_a_first_seen_time_that_cannot_be_one_is_taken_as_now(header: Any) -> None:
    message = cast(
        AbstractIncomingMessage, SimpleNamespace(headers={"x-first-seen": header}, redelivered=False)
    )
    assert Attempts.of(message, trusted=True, now=1_800_000_000.0).first_seen == 1_800_000_000.0


def test_a_first_seen_time_in_the_past_is_kept() -> None:
    message = cast(
        AbstractIncomingMessage, SimpleNamespace(headers={"x-first-seen": 1_700_000_000}, redelivered=True)
    )
    attempts = Attempts.of(message, trusted=True, now=1_800_000_000.0)
    assert (attempts.first_seen, attempts.maybe_applied) == (1_700_000_000.0, True)


def test_the_history_of_a_message_no_fleet_user_sent_is_not_read() -> None:
    headers = {"x-attempts": 99, "x-waits": 9, "x-first-seen": 0, "x-maybe-applied": True, "x-history": ["x"]}
    message = cast(AbstractIncomingMessage, SimpleNamespace(headers=headers, redelivered=False))
    attempts = Attempts.of(message, trusted=False, now=1_800_000_000.0)
    assert attempts == Attempts(count=0, first_seen=1_800_000_000.0, maybe_applied=False)
