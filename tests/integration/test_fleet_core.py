"""The fleet core end to end: commands through the real RabbitMQ and a worker to the DVSA sandbox."""

from __future__ import annotations

import datetime as dt
import random

import msgspec
import pytest
from aio_pika.abc import AbstractChannel

from recalls.shared.contracts import DeleteCommand, FixCommand, GetCommand
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.workers.runtime import Worker
from tests.integration.conftest import DeadLetters, Events, Sandbox, publish, publish_raw
from tests.support.commands import create, vin


async def test_each_verb_end_to_end(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    opened = create(1)
    await publish(channel, settings, opened)
    await events.wait_for(1)
    assert [r["repairStatus"] for r in await sandbox.recalls()] == ["NOT_FIXED"]

    fixed = FixCommand(
        vin=vin(1), manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2024, 4, 1)
    )
    await publish(channel, settings, fixed)
    await events.wait_for(2)
    [state] = await sandbox.recalls()
    assert state["repairStatus"] == "FIXED"

    looked_up = GetCommand(vin=vin(1))
    await publish(channel, settings, looked_up)
    await events.wait_for(3)
    checked = events.by_id()[looked_up.message_id]
    assert checked.result == "applied"
    assert checked.recalls is not None
    assert [(r.manufacturer_campaign_reference, r.repair_status) for r in checked.recalls] == [
        ("CAMP1", "FIXED")
    ]

    second = create(2, "CAMP2")
    await publish(channel, settings, second)
    deleted = DeleteCommand(vin=vin(2), manufacturer_campaign_reference="CAMP2")
    await events.wait_for(4)
    await publish(channel, settings, deleted)
    await events.wait_for(5)
    assert [r["vin"] for r in await sandbox.recalls()] == [vin(1)]

    by_id = events.by_id()
    for command in (opened, fixed, second, deleted):
        event = by_id[command.message_id]
        assert (event.verb, event.result, event.vin) == (command.verb, "applied", command.vin)
        assert event.dvsa_status in (201, 204)


async def test_outcome_reaches_reply_to(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, worker: Worker
) -> None:
    # Named by the broker (amq.gen-...): aio-pika's robust channel would name it amq_<hex> itself, and a
    # name a client chose gets no outcomes.
    underlay = await channel.get_underlay_channel()
    named = await underlay.queue_declare("", exclusive=True, auto_delete=True)
    replies = await channel.get_queue(named.queue or "", ensure=False)
    command = GetCommand(vin=vin(9))
    await publish(channel, settings, command, reply_to=replies.name, correlation_id="ask-1")
    async with replies.iterator() as messages:
        async for message in messages:
            await message.ack()
            break
    assert message.correlation_id == "ask-1"
    assert b'"result":"applied"' in message.body
    assert b'"recalls":[]' in message.body  # DVSA holds nothing for this vehicle


async def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    dead: DeadLetters,
    worker: Worker,
) -> None:
    good = create(3)
    bad_vin = msgspec.json.encode(create(4)).replace(vin(4).encode(), b"NOT-A-VIN")
    poison = [
        (b"{not json", "create"),
        (b'{"verb": "create", "vin": 12}', "create"),
        (b'{"verb": "fix", "vin": "WAUZZZ8V000000004", "rectification_date": "2024-01-01"}', "fix"),
        (b"x" * 200_000, "get"),
        (bad_vin, "create"),
    ]
    for body, key in poison:
        await publish_raw(channel, settings, body, key, message_id="poison")
    await publish(channel, settings, good)
    letters = await dead.wait_for(len(poison))
    reasons = sorted(str((m.headers or {})["x-reason"]) for m in letters)
    assert all(r.startswith("invalid command:") for r in reasons)
    assert any("vin" in r for r in reasons)
    assert any("malformed" in r for r in reasons)
    assert any("larger than" in r for r in reasons)
    assert any("manufacturer_campaign_reference" in r for r in reasons)
    await events.wait_for(1)
    assert events.by_id()[good.message_id].result == "applied"
    assert [r["vin"] for r in await sandbox.recalls()] == [vin(3)]


async def test_permanent_failure_carries_dvsa_status_and_reason(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    dead: DeadLetters,
    worker: Worker,
) -> None:
    await publish(channel, settings, create(5))
    await events.wait_for(1)
    # DVSA refuses a rectification date before the campaign started: that can never succeed.
    early = FixCommand(
        vin=vin(5), manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2020, 1, 1)
    )
    await publish(channel, settings, early)
    [letter] = await dead.wait_for(1)
    headers = letter.headers or {}
    assert headers["x-dvsa-status"] == 400
    assert headers["x-dvsa-error-code"] == "RECALLS-BR-01"
    assert "rectification" in str(headers["x-dvsa-error-message"]).lower()
    assert headers["x-attempts"] == 1
    assert letter.message_id == early.message_id
    await events.wait_for(2)
    failed = events.by_id()[early.message_id]
    assert (failed.result, failed.dvsa_status) == ("failed", 400)


async def test_fix_published_before_its_create_still_ends_fixed(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    # Watch the first retry tier: the fix's retry copy appears there once DVSA has said 404.
    watcher = await channel.declare_queue(exclusive=True, auto_delete=True)
    await watcher.bind(Topology(settings.prefix, settings.retry_tiers).retry_name(0))
    fix = FixCommand(
        vin=vin(6), manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2024, 5, 1)
    )
    await publish(channel, settings, fix)
    async with watcher.iterator() as retries:
        async for retried in retries:
            await retried.ack()
            break
    assert retried.message_id == fix.message_id
    assert "404" in str((retried.headers or {})["x-last-error"])
    await publish(channel, settings, create(6))
    await events.wait_for(2)
    assert events.by_id()[fix.message_id].result == "applied"
    assert events.by_id()[fix.message_id].attempts > 1
    [state] = await sandbox.recalls()
    assert state["repairStatus"] == "FIXED"


# Enough quick tiers that 40% faulty answers cannot exhaust a command's attempts (0.4**13 per command).
@pytest.mark.settings(retry_tiers=(0.1, 0.2, 0.3, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1))
async def test_sandbox_faults_still_apply_every_command_once(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    await sandbox.faults(error_rate=0.2, drop_rate=0.1, timeout_rate=0.1, hang_seconds=3)
    commands = [create(100 + n) for n in range(40)]
    rng = random.Random(7)
    for command in commands:
        await publish(channel, settings, command)
    fixes = [
        FixCommand(vin=c.vin, manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2024, 6, 1))
        for c in rng.sample(commands, 10)
    ]
    for fix in fixes:
        await publish(channel, settings, fix)
    await events.wait_for(len(commands) + len(fixes), timeout=120)
    results = {event.message_id: event for event in events.received}
    failed = [(e.verb, e.reason) for e in results.values() if e.result == "failed"]
    assert not failed
    assert any(e.attempts > 1 for e in results.values())  # the faults were met and retried
    state = {r["vin"]: r["repairStatus"] for r in await sandbox.recalls()}
    fixed = {f.vin for f in fixes}
    assert state == {c.vin: ("FIXED" if c.vin in fixed else "NOT_FIXED") for c in commands}
