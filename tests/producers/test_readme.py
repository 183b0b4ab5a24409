"""The README's Python quick start, extracted and run as a user would run it, against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from aio_pika.abc import AbstractRobustConnection

from recalls import message_id_for
from recalls.shared.topology import Topology, declare
from recalls.shared.validation import decode_command
from tests.producers.conftest import QueueCount
from tests.support.services import AMQP_URL

README = Path(__file__).parents[2] / "README.md"


def quick_start() -> str:
    """The first Python block under the README's "Publish from Python" heading."""
    section = README.read_text(encoding="utf-8").split("## Publish from Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README has no Python block under 'Publish from Python'"
    return found.group(1)


async def test_the_readme_quick_start_publishes_a_create_with_its_derived_id(
    connection: AbstractRobustConnection, names: Topology, cli_env: dict[str, str], queue_count: QueueCount
) -> None:
    async with connection.channel() as channel:
        await declare(channel, names)  # as `recalls topology` would: the quick start declares nothing

    env = {**cli_env, "RECALLS_AMQP_URL": AMQP_URL}
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", quick_start(), env=env, stdout=pipe, stderr=pipe
    )
    out, err = await process.communicate()

    assert (process.returncode, err.decode()) == (0, "")
    expected = message_id_for("create", "WAUZZZF49HA036784", "RC-2025-07", "change-1042")
    assert out.decode() == f"{expected}\n"
    assert await queue_count(names.command_queue("create", "live"), expected=1) == 1
    async with connection.channel() as channel:
        queue = await channel.get_queue(names.command_queue("create", "live"), ensure=False)
        message = await queue.get()
        assert message is not None
        command = decode_command(message.body)
        assert (command.verb, command.message_id, command.vin) == ("create", expected, "WAUZZZF49HA036784")
