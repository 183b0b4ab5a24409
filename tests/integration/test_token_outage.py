"""A token endpoint that fails (the sandbox's outage): left alone for a while, and waited out by workers."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractChannel

from recalls.shared.dvsa.tokens import TokenCache, TokenUnavailable
from recalls.shared.settings import Settings
from tests.integration.conftest import Events, Sandbox, publish, running_worker
from tests.support.commands import create

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


async def test_a_worker_holds_its_commands_through_a_token_outage_rather_than_retrying_them(
    settings: Settings, sandbox: Sandbox, channel: AbstractChannel, events: Events
) -> None:
    await sandbox.faults(token_outage_seconds=3)
    commands = [create(5000 + n) for n in range(10)]
    async with running_worker(settings):
        for command in commands:
            await publish(channel, settings, command)
        await events.wait_for(len(commands))
    assert {(event.result, event.attempts) for event in events.received} == {("applied", 1)}
    assert len(await sandbox.recalls()) == len(commands)
    # Held, the commands asked the endpoint only as often as its quiet spells allow (1, 2, then 4 s).
    assert await token_requests(sandbox) <= 4
