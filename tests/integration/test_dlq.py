"""``recalls dlq`` against the real RabbitMQ: real dead letters from a worker and the DVSA sandbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys

import msgspec
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from recalls.ops.dead_letters import DeadLetterQueue, Filter
from recalls.shared.contracts import FixCommand
from recalls.shared.settings import Settings
from recalls.shared.topology import Topology
from recalls.workers.runtime import Worker
from tests.integration.conftest import Events, Sandbox, publish, publish_raw, worker_env
from tests.support.commands import create, vin
from tests.support.dead_letters import dead_count, wait_for_dead


async def recalls(settings: Settings, *args: str, answer: str = "") -> tuple[int, str, str]:
    """Run ``recalls ARGS`` as a user would; ``answer`` is typed at its prompt."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from recalls.cli.main import main; main()", *args,
        env=worker_env(settings), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(answer.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def early_fix_and_poison(
    channel: AbstractChannel, settings: Settings, events: Events
) -> tuple[FixCommand, str]:
    """Two real dead letters: a fix DVSA refuses (400) and a get whose body is not JSON."""
    await publish(channel, settings, create(5))
    await events.wait_for(1)
    # DVSA refuses a rectification date before the campaign started: that can never succeed.
    early = FixCommand(
        vin=vin(5), manufacturer_campaign_reference="CAMP1", rectification_date=dt.date(2020, 1, 1)
    )
    await publish(channel, settings, early)
    await publish_raw(channel, settings, b"{not json", "get", message_id="poison-1")
    await wait_for_dead(channel, settings, 2)
    return early, "poison-1"


async def test_list_and_show_leave_the_queue_as_it_was(
    sandbox: Sandbox,
    settings: Settings,
    broker: AbstractRobustConnection,
    channel: AbstractChannel,
    events: Events,
    worker: Worker,
) -> None:
    early, poison = await early_fix_and_poison(channel, settings, events)
    queue = DeadLetterQueue(broker, Topology(settings.prefix), idle_timeout=0.5)

    letters = {letter.message_id: letter for letter in await queue.list()}
    assert set(letters) == {early.message_id, poison}
    refused, garbage = letters[early.message_id], letters[poison]
    assert (refused.verb, refused.lane, refused.attempts) == ("fix", "live", 1)
    assert "RECALLS-BR-01" in refused.last_error
    assert refused.reason
    assert (garbage.verb, garbage.attempts) == ("get", 0)
    assert garbage.reason.startswith("invalid command:")

    async def ids(selection: Filter) -> set[str]:
        return {letter.message_id for letter in await queue.list(selection)}

    assert await ids(Filter(verb="fix")) == {early.message_id}
    assert await ids(Filter(verb="create")) == set()
    assert await ids(Filter(reason="INVALID COMMAND")) == {poison}
    assert await ids(Filter(newer_than=600)) == {early.message_id, poison}
    assert await ids(Filter(older_than=600)) == set()
    assert await dead_count(channel, settings) == 2  # reading took nothing

    code, out, err = await recalls(settings, "dlq", "list", "--json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert {(item["message_id"], item["verb"]) for item in listed} == {
        (early.message_id, "fix"),
        (poison, "get"),
    }
    assert all(item["reason"] and item["delivery_count"] >= 1 for item in listed)

    code, out, _ = await recalls(settings, "dlq", "list", "--verb", "get")
    assert code == 0
    assert poison in out and early.message_id not in out and "invalid command" in out
    code, out, _ = await recalls(settings, "dlq", "list", "--reason", "nothing like this")
    assert (code, out.strip()) == (0, "No dead letters match.")

    code, out, _ = await recalls(settings, "dlq", "show", early.message_id)
    assert code == 0
    assert "RECALLS-BR-01" in out
    assert '"rectification_date": "2020-01-01"' in out  # the body, pretty-printed
    code, out, _ = await recalls(settings, "dlq", "show", poison, "--json")
    [shown] = json.loads(out)
    assert (shown["body"], shown["verb"]) == ("{not json", "get")
    code, out, err = await recalls(settings, "dlq", "show", "no-such-id")
    assert (code, out, err) == (2, "", "error: MESSAGE_ID: no dead letter with message id 'no-such-id'\n")

    assert await dead_count(channel, settings) == 2


@pytest.mark.settings(retry_tiers=(0.2,))
async def test_replay_of_a_transient_failure_applies_it_once_with_its_message_id(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, events: Events, worker: Worker
) -> None:
    await sandbox.faults(error_rate=1.0)  # DVSA answers 500 to everything: the retries run out
    live, bulk, background = create(7), create(8), create(9)
    await publish(channel, settings, live)
    for command, key in ((bulk, "create.bulk"), (background, "create.background")):
        await publish_raw(
            channel,
            settings,
            msgspec.json.encode(command),
            key,
            message_id=command.message_id,
            content_type="application/json",
        )
    await events.wait_for(3)
    assert {event.result for event in events.received} == {"failed"}
    await wait_for_dead(channel, settings, 3)
    await sandbox.faults(error_rate=0.0)

    code, out, err = await recalls(settings, "dlq", "replay", "--id", live.message_id)
    assert (code, out.strip(), err) == (0, "Replayed 1 dead letter.", "")
    await events.wait_for(4)
    code, out, err = await recalls(settings, "dlq", "replay", "--verb", "create")
    assert (code, out.strip(), err) == (0, "Replayed 2 dead letters.", "")
    await events.wait_for(6)

    applied = {event.message_id: event for event in events.received[3:]}
    assert set(applied) == {live.message_id, bulk.message_id, background.message_id}  # ids kept
    for command, lane in ((live, "live"), (bulk, "bulk"), (background, "background")):
        event = applied[command.message_id]
        assert (event.result, event.lane, event.attempts) == ("applied", lane, 1)  # a first attempt
    assert sorted(r["vin"] for r in await sandbox.recalls()) == [vin(7), vin(8), vin(9)]
    creates = [r for r in await sandbox.requests() if r["verb"] == "create" and r["status"] == 201]
    assert len(creates) == 3  # each reached DVSA once when it could be applied
    assert await dead_count(channel, settings) == 0


async def test_purge_asks_unless_yes_and_counts(
    sandbox: Sandbox, settings: Settings, channel: AbstractChannel, worker: Worker
) -> None:
    for n, key in enumerate(("get", "get", "fix")):
        await publish_raw(channel, settings, b"\xff not utf-8", key, message_id=f"bad-{n}")
    await wait_for_dead(channel, settings, 3)

    code, out, _ = await recalls(settings, "dlq", "purge", answer="n\n")
    assert code == 1
    assert "Delete 3 dead letters for good?" in out
    assert await dead_count(channel, settings) == 3

    code, out, _ = await recalls(settings, "dlq", "purge", "--verb", "get", answer="y\n")
    assert code == 0
    assert out.endswith("Purged 2 dead letters.\n")  # after the prompt, on its line: no tty echoes "y"
    assert await dead_count(channel, settings) == 1

    code, out, _ = await recalls(settings, "dlq", "purge", "--yes")
    assert (code, out.strip()) == (0, "Purged 1 dead letter.")
    assert await dead_count(channel, settings) == 0


async def test_a_letter_rabbitmq_dead_lettered_is_described_by_rabbitmq_not_its_sender(
    settings: Settings, broker: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    # A publisher's own x- headers must not pass for a worker's account of why the command died.
    forged = {"x-reason": "nothing wrong here", "x-routing-key": "get", "x-dead-at": 1}
    await publish_raw(channel, settings, b"{}", "fix", message_id="rejected-1", headers=forged)
    queue = await channel.get_queue(Topology(settings.prefix).command_queue("fix", "live"))
    message = await queue.get(timeout=10)
    assert message is not None
    await message.reject(requeue=False)  # the command queue dead-letters it, as at its delivery limit
    await wait_for_dead(channel, settings, 1)

    [letter] = await DeadLetterQueue(broker, Topology(settings.prefix), idle_timeout=0.5).list()
    assert letter.reason.endswith(": rejected") and "nothing wrong" not in letter.reason
    assert letter.verb == "fix"
    assert letter.dead_at is not None and letter.dead_at > 1


async def test_show_and_list_escape_the_terminal_controls_a_sender_put_in_a_letter(
    settings: Settings, channel: AbstractChannel
) -> None:
    retitle, clear = "\x1b]0;all good\x07", "\x1b[2J"
    await publish_raw(
        channel, settings, f"{clear}not json{retitle}".encode(), "fix",
        message_id=f"evil{clear}-1", headers={"x-note": f"see{retitle}"},
    )  # fmt: skip
    queue = await channel.get_queue(Topology(settings.prefix).command_queue("fix", "live"))
    message = await queue.get(timeout=10)
    assert message is not None
    await message.reject(requeue=False)
    await wait_for_dead(channel, settings, 1)

    code, shown, _ = await recalls(settings, "dlq", "show", f"evil{clear}-1")
    _, listed, _ = await recalls(settings, "dlq", "list")
    assert code == 0
    for out in (shown, listed):
        assert "\x1b" not in out and "\x07" not in out
        assert "evil\\x1b[2J-1" in out
    assert "\\x1b[2Jnot json\\x1b]0;all good\\x07" in shown  # the body, escaped and still readable
    assert "see\\u001b]0;all good\\u0007" in shown  # the header, as JSON writes it
