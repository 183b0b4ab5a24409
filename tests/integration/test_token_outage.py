"""A token endpoint that fails is left alone for a while, then asked again (the real sandbox's outage)."""

from __future__ import annotations

import pytest

from shared.dvsa.tokens import TokenCache, TokenUnavailable
from shared.settings import Settings
from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.integration


async def token_requests(sandbox: Sandbox) -> int:
    return int((await sandbox.admin.get("/__admin/stats")).json()["token_requests"])


async def test_a_failing_token_endpoint_is_left_alone_for_a_while(
    settings: Settings, sandbox: Sandbox
) -> None:
    now = [1_000.0]
    cache = TokenCache(settings, clock=lambda: now[0])
    try:
        await sandbox.faults(token_outage_seconds=3600)
        with pytest.raises(TokenUnavailable, match="token endpoint unreachable"):
            await cache.token()
        asked = await token_requests(sandbox)
        for _ in range(20):  # every command that finds no token meanwhile fails at once, without asking
            with pytest.raises(TokenUnavailable, match="not asked again yet"):
                await cache.token()
        assert await token_requests(sandbox) == asked
        await sandbox.faults(token_outage_seconds=0)
        now[0] += 1.0  # the first quiet spell is 1 s
        assert await cache.token()
        assert await token_requests(sandbox) == asked + 1
    finally:
        await cache.aclose()
