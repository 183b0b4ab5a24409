"""Nothing lost, nothing applied twice in effect: worker stops, redeliveries, token expiry, 429s."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from recalls.cli.sandbox_process import pointed_at
from recalls.shared.contracts import Command, CreateCommand, DeleteCommand, FixCommand, Verb
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.shared.validation import decode_command
from recalls.workers.runtime import dvsa_client
from tests.integration.conftest import (
    Events,
    Sandbox,
    base_settings,
    collect_events,
    publish,
    running_sandbox,
    running_worker,
    worker_env,
)
from tests.support.commands import create, vin
from tests.support.logged import watching
from tests.support.polling import poll_until


async def start_worker_process(settings: Settings) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from recalls.cli.main import main; main()",
        "worker",
        env=worker_env(settings),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while b"worker consuming" not in await process.stderr.readline():
            pass
    return process


async def test_sigterm_mid_run_then_restart_loses_and_doubles_nothing(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    commands = [create(1000 + n) for n in range(120)]  # about five seconds of creates at 25/s
    first = await start_worker_process(settings)
    for command in commands:
        await publish(channel, settings, command)
    await events.wait_for(20)
    first.send_signal(signal.SIGTERM)
    assert await first.wait() == 0
    stopped_at = len(events.received)
    assert stopped_at < len(commands), "the worker should have been stopped mid-run"

    second = await start_worker_process(settings)
    try:
        await events.wait_for(len(commands), timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
    outcomes = events.by_id()
    assert set(outcomes) == {c.message_id for c in commands}
    assert {e.result for e in outcomes.values()} <= {"applied", "already_applied"}
    held = [r["vin"] for r in await sandbox.recalls()]
    assert sorted(held) == sorted(c.vin for c in commands)  # each exactly once


async def _take(
    broker: AbstractRobustConnection, settings: Settings, verb: Verb
) -> tuple[AbstractChannel, AbstractIncomingMessage]:
    """Play a worker that took the next command of ``verb``: closing its channel, unacked, lets it go."""
    channel = await broker.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.get_queue(Topology(settings.prefix).command_queue(verb))
    message = await queue.get(timeout=10)
    assert message is not None
    return channel, message


async def _apply_then_crash(broker: AbstractRobustConnection, settings: Settings, verb: Verb) -> None:
    """Play a worker that calls DVSA successfully and dies before acking: the broker redelivers."""
    channel, message = await _take(broker, settings, verb)
    async with dvsa_client(settings) as dvsa:
        reply = await dvsa.call(decode_command(message.body))
    assert reply.status in (201, 204)
    await channel.close()  # no ack: the message goes back to its queue, marked redelivered


async def test_redelivery_after_dvsa_applied_is_already_applied(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
) -> None:
    async with running_worker(settings):  # a recall the fleet created, so its ledger knows it
        await publish(channel, settings, create(2002))
        await events.wait_for(1)
    events.received.clear()
    # One command per verb queue, so each crash-and-redeliver concerns exactly that command.
    script: list[Command] = [
        create(2001),
        FixCommand(
            vin=vin(2001), manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2024, 7, 1)
        ),
        DeleteCommand(vin=vin(2002), manufacturer_campaign_reference="CAMP1"),
    ]
    for command in script:
        await publish(channel, settings, command)
        await _apply_then_crash(broker, settings, command.verb)
    async with running_worker(settings):
        await events.wait_for(len(script))
    outcomes = events.by_id()
    assert [outcomes[c.message_id].result for c in script] == ["already_applied"] * 3
    assert [(r["vin"], r["repairStatus"]) for r in await sandbox.recalls()] == [(vin(2001), "FIXED")]


async def test_token_expiry_mid_run(prefix: str, broker: AbstractRobustConnection) -> None:
    settings = base_settings(prefix)
    async with running_sandbox(settings, "--token-ttl", "2") as sandbox:
        settings = pointed_at(settings, sandbox.url)
        channel = await broker.channel(publisher_confirms=True)
        async with running_worker(settings):
            collected = await collect_events(channel, settings)
            commands = [create(3000 + n) for n in range(150)]  # six seconds: three token lifetimes
            for command in commands:
                await publish(channel, settings, command)
            await collected.wait_for(len(commands), timeout=60)
        assert {e.result for e in collected.received} == {"applied"}
        stats = await sandbox.stats()
        assert stats["tokens_issued"] >= 3
        assert len(await sandbox.recalls()) == len(commands)


async def test_429_burst_is_retried_and_pauses_the_verb(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events, worker: object
) -> None:
    await sandbox.faults(storm_seconds=1.5)
    commands = [create(4000 + n) for n in range(30)]
    for command in commands:
        await publish(channel, settings, command)
    await events.wait_for(len(commands), timeout=60)
    assert {e.result for e in events.received} == {"applied"}
    assert any(e.attempts > 1 for e in events.received)
    stats = await sandbox.stats()
    # The worker paused after the first 429s instead of hammering through the storm.
    assert 0 < stats["create"]["throttled"] < 10
    assert len(await sandbox.recalls()) == len(commands)


async def test_a_redelivered_delete_never_sent_waits_for_its_create(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
) -> None:
    delete = DeleteCommand(vin=vin(2101), manufacturer_campaign_reference="CAMP1")
    await publish(channel, settings, delete)
    taken, _ = await _take(broker, settings, "delete")  # a worker took it and died before sending it
    await taken.close()  # back to its queue, marked redelivered
    async with running_worker(settings):
        await publish(channel, settings, create(2101))  # after the delete: it met 404 first, and waited
        await events.wait_for(2)
    outcomes = events.by_id()
    assert outcomes[delete.message_id].result == "applied"
    assert await sandbox.recalls() == []


async def _created_then_held(
    broker: AbstractRobustConnection, settings: Settings, channel: AbstractChannel, n: int
) -> tuple[CreateCommand, AbstractChannel, DeleteCommand]:
    """A create DVSA applied whose worker died, taken again and held; and the delete issued after it."""
    first = create(n)
    await publish(channel, settings, first)
    await _apply_then_crash(broker, settings, "create")  # DVSA created it; the create comes back
    holding, _ = await _take(broker, settings, "create")  # held while the delete runs
    return first, holding, DeleteCommand(vin=vin(n), manufacturer_campaign_reference="CAMP1")


async def test_a_create_a_later_delete_removed_is_not_sent_again(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
) -> None:
    first, holding, delete = await _created_then_held(broker, settings, channel, 2201)
    async with running_worker(settings):
        await publish(channel, settings, delete)
        await events.wait_for(1)
    await holding.close()
    async with running_worker(settings):
        await events.wait_for(2)
    outcomes = events.by_id()
    assert outcomes[delete.message_id].result == "applied"
    assert outcomes[first.message_id].result == "already_applied"
    assert outcomes[first.message_id].dvsa_status is None  # not sent again
    assert await sandbox.recalls() == []


async def _create_back_while_delete_answers(
    sandbox: Sandbox,
    settings: Settings,
    channel: AbstractChannel,
    events: Events,
    holding: AbstractChannel,
    delete: DeleteCommand,
) -> None:
    """DVSA applies ``delete`` and answers a moment later, within the worker's patience; the held
    create comes back meanwhile, before the delete's outcome is in the ledger; both are settled."""
    settled = len(events.received) + 2
    await sandbox.faults(timeout_rate=1.0, hang_seconds=settings.dvsa_timeout * 0.75)
    async with running_worker(settings):
        await publish(channel, settings, delete)
        await poll_until(sandbox.recalls, lambda held: held == [])  # deleted; the answer is on its way
        await sandbox.faults(timeout_rate=0.0)
        await holding.close()
        await events.wait_for(settled)


async def test_a_create_applied_and_taken_again_while_its_delete_is_at_dvsa_is_not_sent(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
) -> None:
    first = create(2251)
    async with running_worker(settings):  # applied, and in the ledger
        await publish(channel, settings, first)
        await events.wait_for(1)
    await publish(channel, settings, first)  # and back, as after a broker loss took its ack
    holding, _ = await _take(broker, settings, "create")
    delete = DeleteCommand(vin=vin(2251), manufacturer_campaign_reference="CAMP1")
    await _create_back_while_delete_answers(sandbox, settings, channel, events, holding, delete)
    outcomes = [(e.verb, e.result, e.dvsa_status) for e in events.received]
    assert sorted(outcomes) == [
        ("create", "already_applied", None),
        ("create", "applied", 201),
        ("delete", "applied", 204),
    ]
    assert await sandbox.recalls() == []


async def test_a_create_whose_worker_died_waits_for_a_later_delete_at_dvsa(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
) -> None:
    first, holding, delete = await _created_then_held(broker, settings, channel, 2256)  # not in the ledger
    await _create_back_while_delete_answers(sandbox, settings, channel, events, holding, delete)
    outcomes = events.by_id()
    assert (outcomes[delete.message_id].result, outcomes[delete.message_id].dvsa_status) == ("applied", 204)
    assert (outcomes[first.message_id].result, outcomes[first.message_id].dvsa_status) == (
        "already_applied",
        None,
    )
    assert await sandbox.recalls() == []


async def test_a_create_issued_after_a_delete_brings_the_recall_back(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    async with running_worker(settings):
        await publish(channel, settings, create(2261))
        await events.wait_for(1)
        # A correction: the recall deleted and created again, both issued before the delete is applied.
        delete = DeleteCommand(vin=vin(2261), manufacturer_campaign_reference="CAMP1")
        again = create(2261)
        await publish(channel, settings, delete)
        await events.wait_for(2)
        await publish(channel, settings, again)
        await events.wait_for(3)
    assert events.by_id()[again.message_id].dvsa_status == 201
    assert [r["vin"] for r in await sandbox.recalls()] == [vin(2261)]


async def test_a_create_retried_after_a_delete_in_doubt_does_not_bring_the_recall_back(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
) -> None:
    first, holding, delete = await _created_then_held(broker, settings, channel, 2301)
    # DVSA applies the delete but its answer never comes: the worker cannot know it was applied.
    await sandbox.faults(timeout_rate=1.0, hang_seconds=settings.dvsa_timeout + 1)
    with watching("recalls.worker", f"delete {vin(2301)} retry") as retried:
        async with running_worker(settings):
            await publish(channel, settings, delete)
            await retried.seen()
            await sandbox.faults(timeout_rate=0.0)
            await holding.close()  # the create is taken again while the delete is in doubt
            await events.wait_for(2)
    outcomes = events.by_id()
    assert outcomes[first.message_id].result == "already_applied"
    assert outcomes[first.message_id].dvsa_status is None  # not sent again
    assert outcomes[delete.message_id].result in ("applied", "already_applied")
    assert await sandbox.recalls() == []
    created = [r for r in await sandbox.requests() if r["verb"] == "create" and r["status"] == 201]
    assert len(created) == 1  # never created a second time
