"""RabbitMQ plumbing both sides need: a connection from the settings and a publish that is really done.

``publish_confirmed`` returns only when the broker has confirmed the message *and* routed it: aio-pika
reports an unroutable mandatory message as a returned message rather than an error, which would
silently drop a command, so it is turned into :class:`Unroutable` here.

Every message the fleet publishes goes through :func:`publish_body_confirmed`, which stamps it with
``user_id`` = the broker user of its connection.  RabbitMQ refuses a message whose ``user_id`` is not
the publishing connection's user, so a consumer can believe it: it says who sent the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError
from pamqp.commands import Basic

if TYPE_CHECKING:  # pydantic-settings is no import of the publisher library's
    from recalls.shared.settings import Settings


class PublishFailed(Exception):
    """The broker did not take responsibility for a message (nack, unroutable or closed channel)."""


class Unroutable(PublishFailed):
    """A mandatory message matched no queue: its topology is missing."""


class Nacked(PublishFailed):
    """The broker refused the message: a queue that rejects publishes when full, or its own trouble."""


# aiormq's own default (60 s) notices a hung connection only after about three minutes; with 10 s it
# takes about half a minute.  A URL that names its own ``heartbeat`` keeps it.
DEFAULT_HEARTBEAT_S = 10
_OWN_REPLY_QUEUES = ("amq.gen-", "amq.rabbitmq.reply-to")


def broker_url(settings: Settings) -> str:
    """The broker URL of the settings, with the default heartbeat unless the URL sets one."""
    return with_heartbeat(settings.amqp_url.get_secret_value())


def with_heartbeat(url: str) -> str:
    """``url`` with the default heartbeat unless it sets one."""
    parts = urlsplit(url)
    if "heartbeat" in parse_qs(parts.query):
        return url
    query = "&".join(filter(None, [parts.query, f"heartbeat={DEFAULT_HEARTBEAT_S}"]))
    return urlunsplit(parts._replace(query=query))


def broker_user(url: str) -> str | None:
    """The broker user a connection to ``url`` logs in as: the URL's user, or aiormq's default, guest.

    None with ``auth=external`` (TLS client certificates): then the broker, not the URL, names the user.
    """
    parts = urlsplit(url)
    if parse_qs(parts.query).get("auth", ["plain"])[-1].upper() == "EXTERNAL":
        return None
    return unquote(parts.username) if parts.username else "guest"


def is_own_reply_queue(name: str) -> bool:
    """Whether ``name`` is a queue only its declarer can have named: server-named or direct reply-to.

    RabbitMQ refuses a client-chosen name starting with ``amq.``; it names a queue declared without a
    name ``amq.gen-...``, and rewrites ``amq.rabbitmq.reply-to`` into a channel's own reply address.
    """
    return name.startswith(_OWN_REPLY_QUEUES)


async def connect(
    settings: Settings, name: str, *, connect_timeout: float | None = None
) -> AbstractRobustConnection:
    """A robust connection (it reconnects by itself) named after its role for the management UI.

    ``connect_timeout`` bounds the first connect (a host that drops packets would hold it for minutes).
    """
    return await aio_pika.connect_robust(
        broker_url(settings), client_properties={"connection_name": name}, timeout=connect_timeout
    )


async def publish_confirmed(
    exchange: AbstractExchange,
    message: aio_pika.Message,
    routing_key: str,
    *,
    mandatory: bool = True,
) -> None:
    """Publish and wait for the broker's confirm; raise :class:`PublishFailed` unless it took it."""
    channel = cast(aio_pika.Exchange, exchange).channel  # what aio-pika hands out is one, with its channel
    await publish_body_confirmed(
        channel, exchange.name, message.body, message.properties, routing_key, mandatory=mandatory
    )


async def publish_body_confirmed(
    channel: AbstractChannel,
    exchange: str,
    body: bytes,
    properties: Basic.Properties,
    routing_key: str,
    *,
    mandatory: bool = True,
) -> None:
    """:func:`publish_confirmed` of a body and its properties, with no ``aio_pika.Message``.

    For bulk publishing and each command's outcome: building a Message and going through
    ``Exchange.publish`` costs a tenth of what publishing a message costs the client, and the frames
    sent are the same.  ``properties.user_id`` is set here to the user of the channel's connection.
    """
    if channel.is_closed:
        raise ChannelInvalidStateError(f"{channel!r} closed")
    underlay = await channel.get_underlay_channel()
    properties.user_id = broker_user(str(underlay.connection.url))
    try:
        confirmation = await underlay.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=mandatory
        )
    except DeliveryError as exc:
        raise Nacked(f"broker refused message for {routing_key!r}") from exc
    _check(confirmation, exchange, routing_key)


def _check(confirmation: object, exchange: str, routing_key: str) -> None:
    if isinstance(confirmation, Basic.Ack) or confirmation is None:
        return
    if isinstance(confirmation, Basic.Nack | Basic.Reject):
        raise Nacked(f"broker refused message for {routing_key!r}")
    raise Unroutable(f"no queue is bound to {exchange!r} for routing key {routing_key!r}")
