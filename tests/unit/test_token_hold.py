"""TokenHold: a DVSA call waits out a failing token endpoint, up to its patience, then gives up.

The source is a scripted stand-in for the token cache, and the clock and sleep are fake, so the waits
take no time; the real cache and endpoint are in tests/integration/test_token_outage.py.
"""

from __future__ import annotations

import logging

import pytest

from recalls.shared.dvsa.token_hold import TokenHold
from recalls.shared.dvsa.tokens import TokenUnavailable


class Endpoint:
    """A token source that fails until ``up_at`` on the shared fake clock."""

    def __init__(self, now: list[float], up_at: float) -> None:
        self.now = now
        self.up_at = up_at
        self.asked: list[str | None] = []

    async def token(self) -> str:
        return self._answer(None)

    async def refresh(self, rejected: str) -> str:
        return self._answer(rejected)

    def _answer(self, rejected: str | None) -> str:
        self.asked.append(rejected)
        if self.now[0] < self.up_at:
            raise TokenUnavailable("token endpoint unreachable: ConnectError")
        return "fresh-token"


def holding(up_at: float, patience: float) -> tuple[TokenHold, Endpoint, list[float]]:
    now = [0.0]
    endpoint = Endpoint(now, up_at)

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    return TokenHold(endpoint, patience=patience, clock=lambda: now[0], sleep=sleep), endpoint, now


async def test_a_call_holds_until_the_endpoint_answers(caplog: pytest.LogCaptureFixture) -> None:
    hold, endpoint, now = holding(up_at=4.5, patience=30)
    with caplog.at_level(logging.WARNING, logger="recalls.tokens"):
        assert await hold.token() == "fresh-token"
    assert now[0] == 5.0  # asked every second: at 0, 1, 2, 3, 4 (failing) and 5
    assert len(endpoint.asked) == 6
    # One line when the outage is met and one when it ends, however many asks between.
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "no DVSA token",
        "DVSA token available again",
    ]


async def test_past_its_patience_a_call_gives_up() -> None:
    hold, endpoint, now = holding(up_at=100, patience=3)
    with pytest.raises(TokenUnavailable, match="unreachable"):
        await hold.token()
    assert now[0] == 3.0 and len(endpoint.asked) == 4  # at 0, 1, 2, 3: a fourth wait would pass 3 s


async def test_a_refresh_is_held_too_and_names_the_rejected_token() -> None:
    hold, endpoint, _ = holding(up_at=1, patience=30)
    assert await hold.refresh("rejected-token") == "fresh-token"
    assert endpoint.asked == ["rejected-token", "rejected-token"]


async def test_no_patience_means_no_hold() -> None:
    hold, endpoint, now = holding(up_at=1, patience=0)
    with pytest.raises(TokenUnavailable):
        await hold.token()
    assert (now[0], len(endpoint.asked)) == (0.0, 1)
