"""A background call waits for a rate slot only so long, then gives its command back as a wait.

Its delivery stays unacked while it waits, and RabbitMQ closes a consumer's channel (every lane's
deliveries with it) when one waits past the consumer timeout.  Real limiter and client; DVSA is a
stand-in transport (this is a unit test) that notes what it is sent, which must be nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from recalls.shared.contracts import GetCommand
from recalls.shared.dvsa.client import BudgetTaken, DvsaClient
from recalls.shared.dvsa.transport import RawReply
from recalls.shared.ratelimit import SpacingLimiter

VIN = "WAUZZZF49HA036784"


class Tokens:
    async def token(self) -> str:
        return "token"

    async def refresh(self, rejected: str) -> str:
        return "token"


class Answering:
    """Answers every request 200 with no recalls, noting its method and URL in ``sent``."""

    def __init__(self, sent: list[str]) -> None:
        self.sent = sent

    async def request(self, method: str, url: str, **_: Any) -> RawReply:
        self.sent.append(f"{method} {url}")
        return RawReply(200, None, msgspec.json.encode({"vin": VIN, "recalls": []}))


def client(limiter: SpacingLimiter, sent: list[str]) -> DvsaClient:
    return DvsaClient(
        Answering(sent), base_url="http://dvsa.test", api_key="k" * 10, tokens=Tokens(), limiter=limiter,
        background_patience=0.05,
    )  # fmt: skip


async def test_a_background_call_with_no_slot_left_gives_up_unsent() -> None:
    limiter, sent = SpacingLimiter(25, 0.002), list[str]()
    await limiter.pause("get", 60)  # the schedule is taken for a minute: no slot for background
    with pytest.raises(BudgetTaken, match="no get slot left by live and bulk work"):
        await client(limiter, sent).get(GetCommand(vin=VIN), "background")
    assert sent == []


async def test_a_background_call_with_a_slot_is_sent() -> None:
    limiter, sent = SpacingLimiter(25, 0.002), list[str]()
    reply = await client(limiter, sent).get(GetCommand(vin=VIN), "background")
    assert (reply.status, len(sent)) == (200, 1)
