"""RabbitMQ plumbing both sides need: a connection from the settings and a publish that is really done.

``publish_confirmed`` returns only when the broker has confirmed the message *and* routed it: aio-pika
reports an unroutable mandatory message as a returned message rather than an error, which would
silently drop a command, so it is turned into :class:`Unroutable` here.

Every message the fleet publishes goes through :func:`publish_body_confirmed`, which stamps it with
``user_id`` = the broker user of its connection.  RabbitMQ refuses a message whose ``user_id`` is not
the publishing connection's user, so a consumer can believe it: it says who sent the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import (
    AuthenticationError,
    ChannelInvalidStateError,
    DeliveryError,
    ProbableAuthenticationError,
)
from pamqp.commands import Basic
from yarl import URL

from recalls.shared.broker_urls import BrokerUrls, address, broker_user


class PublishFailed(Exception):
    """The broker did not take responsibility for a message (nack, unroutable or closed channel)."""


class Unroutable(PublishFailed):
    """A mandatory message matched no queue: its topology is missing."""


class Nacked(PublishFailed):
    """The broker refused the message: a queue that rejects publishes when full, or its own trouble."""


_OWN_REPLY_QUEUES = ("amq.gen-", "amq.rabbitmq.reply-to")
CONNECT_TIMEOUT = 5.0


class BrokerUnreachable(ConnectionError):
    """No node of RabbitMQ could be reached, or one refused the login.  The message never holds a password."""


def is_own_reply_queue(name: str) -> bool:
    """Whether ``name`` is a queue only its declarer can have named: server-named or direct reply-to.

    RabbitMQ refuses a client-chosen name starting with ``amq.``; it names a queue declared without a
    name ``amq.gen-...``, and rewrites ``amq.rabbitmq.reply-to`` into a channel's own reply address.
    """
    return name.startswith(_OWN_REPLY_QUEUES)


async def connect(
    amqp_url: str, *, name: str, connect_timeout: float = CONNECT_TIMEOUT
) -> FailoverConnection:
    """A robust connection to the broker ``amqp_url`` names (one node, or a cluster's, see
    :mod:`recalls.shared.broker_urls`), named ``name`` for the management UI.

    The nodes are tried in order until one accepts, all within ``connect_timeout`` seconds (a host that
    drops packets would otherwise hold the attempt for minutes); a refused login ends the tries at once,
    since the nodes of a cluster share their users.  Raises :class:`BrokerUnreachable`, or
    :class:`~recalls.shared.broker_urls.BrokerUrlError` for a value that is no broker URL.  Once
    connected, the connection reconnects by itself, to the next node in turn each time.
    """
    urls = BrokerUrls.parse(amqp_url)
    nodes = [URL(url) for url in urls.with_heartbeat()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    reasons: list[str] = []
    for start, node in enumerate(nodes):
        remaining = deadline - loop.time()
        if remaining <= 0:
            reasons.append(f"no answer within {connect_timeout:g} s")
            break
        connection = FailoverConnection(nodes, start, client_properties={"connection_name": name})
        try:
            await connection.connect(timeout=remaining)
            return connection
        except (AuthenticationError, ProbableAuthenticationError):
            await connection.close()
            raise BrokerUnreachable(
                f"RabbitMQ at {address(str(node))} refused the login (check the user in RECALLS_AMQP_URL)"
            ) from None
        except CONNECTION_EXCEPTIONS as exc:  # TimeoutError among them
            await connection.close()
            reason = (
                f"no answer within {connect_timeout:g} s"
                if isinstance(exc, TimeoutError)
                else urls.redact(str(exc) or type(exc).__name__)
            )
            reasons.append(reason if len(nodes) == 1 else f"{address(str(node))}: {reason}")
        except BaseException:
            await connection.close()  # a cancelled attempt must not leave its reconnect loop behind
            raise
    # "from None": the original may be printed with a traceback; only the redacted reasons travel.
    raise BrokerUnreachable(f"RabbitMQ unreachable at {urls.addresses} ({'; '.join(reasons)})") from None


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over a cluster's nodes: each reconnect goes to the next node after the last.

    aio-pika's robust connection reconnects to its one URL; a cluster node that is down would then
    keep every client of it waiting until it returns.  This one moves its URL on before each attempt
    to reconnect, so clients spread over the nodes that are up, and restores its channels and
    consumers there as aio-pika does.
    """

    def __init__(self, nodes: Sequence[URL], start: int, **kwargs: Any) -> None:
        super().__init__(nodes[start], **kwargs)
        self._nodes = tuple(nodes)
        self._node = start
        self._tried = False

    @property
    def node(self) -> str:
        """``host:port`` of the node this connection is on, or tries next: safe to print."""
        return address(str(self.url))

    async def _RobustConnection__connect_transport(self) -> None:  # noqa: N802  (aio-pika's private hook)
        if self._tried:  # the first attempt is the node this connection was made for
            self._node = (self._node + 1) % len(self._nodes)
            self.url = self._nodes[self._node]
        self._tried = True
        await super()._RobustConnection__connect_transport()  # type: ignore[misc]


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
