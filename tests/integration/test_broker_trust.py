"""Who may speak on the broker: the fleet believes a message only as far as its sender's broker user.

Each test makes its broker users with ``rabbitmqctl`` on the loopback RabbitMQ (random names and
passwords, permissions on the default vhost limited to the test's prefix) and deletes them afterwards.
RabbitMQ refuses a message whose ``user_id`` is not its connection's user, so ``user_id`` names the
sender: a stranger can leave it out, but cannot claim another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel

from producers.publisher import Publisher
from shared.contracts import GetCommand
from shared.settings import Settings
from shared.topology import Topology


@dataclass(frozen=True)
class BrokerUser:
    name: str
    password: str

    @property
    def url(self) -> str:
        return f"amqp://{self.name}:{self.password}@127.0.0.1:5672/"


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, error = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args[0]}: {error.decode(errors='replace')}"


@contextlib.asynccontextmanager
async def broker_user(
    *, configure: str = "^$", write: str = "^$", read: str = "^$"
) -> AsyncIterator[BrokerUser]:
    """A broker user with these permissions (regexes) on the default vhost, deleted afterwards."""
    user = BrokerUser(f"it-user-{uuid.uuid4().hex[:10]}", secrets.token_hex(16))
    await rabbitmqctl("add_user", user.name, user.password)
    try:
        await rabbitmqctl("set_permissions", "-p", "/", user.name, configure, write, read)
        yield user
    finally:
        await rabbitmqctl("delete_user", user.name)


def changed(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with ``changes``, validated as settings are."""
    return Settings(**{**dict(settings), **changes})


def only(prefix: str, *names: str) -> str:
    """A permission regex matching exactly ``<prefix>.<name>`` for each of ``names`` (themselves regexes)."""
    return "^(" + "|".join(f"{re.escape(prefix)}\\.{name}" for name in names) + ")$"


async def test_a_publisher_stamps_each_command_with_its_broker_user(
    settings: Settings, channel: AbstractChannel, prefix: str
) -> None:
    everything = only(prefix, ".+")  # may declare the topology too: this test is about the stamp alone
    permissions = {"configure": everything, "write": everything, "read": everything}
    async with (
        broker_user(**permissions) as user,
        Publisher.connect(changed(settings, amqp_url=user.url)) as publisher,
    ):
        await publisher.publish(GetCommand(vin="WAUZZZF49HA036784"))
    queue = await channel.get_queue(Topology(settings.prefix).command_queue("get"))
    message = await queue.get(no_ack=True, fail=True)
    assert message is not None and message.user_id == user.name
