"""Times the workers put in message headers survive AMQP's table encoding to the second."""

from __future__ import annotations

import time

from pamqp import decode, encode

from workers.attempts import Attempts


def test_first_seen_survives_the_wire_to_the_second() -> None:
    now = time.time()
    sent = Attempts(count=2, first_seen=now, maybe_applied=False).headers()
    _, received = decode.field_table(encode.field_table(sent))  # type: ignore[arg-type]
    first_seen = received["x-first-seen"]
    assert isinstance(first_seen, int | float)
    assert abs(first_seen - now) <= 0.5
