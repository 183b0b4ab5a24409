"""Connecting a producer to RabbitMQ: quickly, and naming the broker without its credentials.

A producer is a short-lived command or a request handler of another system, so it must learn within
seconds that the broker is down rather than wait on it.  Errors name host and port only, because
``RECALLS_AMQP_URL`` may carry a password and error text ends up in logs and terminals.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import AuthenticationError, ProbableAuthenticationError

from recalls.shared.amqp import with_heartbeat
from recalls.shared.topology import Topology, TopologyError, missing_exchanges

CONNECT_TIMEOUT = 5.0
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


class BrokerUnreachable(ConnectionError):
    """RabbitMQ could not be reached or refused the login.  The message never holds the password."""


def broker_address(amqp_url: str) -> str:
    """``host:port`` of the broker ``amqp_url`` names, safe to print."""
    url = urlsplit(amqp_url)
    try:
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 5672)
    except ValueError:  # a port that is not a number: show the host alone
        return url.hostname or "?"
    return f"{url.hostname or '?'}:{port}"


def redact(text: str, amqp_url: str) -> str:
    """``text`` with the password of ``amqp_url`` (if any) masked, for messages quoting a library's error."""
    password = urlsplit(amqp_url).password
    return text.replace(password, "***") if password else text


async def connect(
    amqp_url: str, *, name: str, connect_timeout: float = CONNECT_TIMEOUT
) -> AbstractRobustConnection:
    """A robust connection to ``amqp_url`` (the default heartbeat unless it sets one) named ``name``.

    Raises :class:`BrokerUnreachable` within ``connect_timeout`` seconds.

    ``connect_robust`` fails fast on the *first* attempt (its ``fail_fast`` default) and reconnects by
    itself afterwards; the timeout bounds a broker that accepts TCP but never answers.
    """
    address = broker_address(amqp_url)
    try:
        return await aio_pika.connect_robust(
            with_heartbeat(amqp_url),
            timeout=connect_timeout,
            client_properties={"connection_name": name},
        )
    except (AuthenticationError, ProbableAuthenticationError):
        raise BrokerUnreachable(
            f"RabbitMQ at {address} refused the login (check the user in RECALLS_AMQP_URL)"
        ) from None
    except TimeoutError:
        raise BrokerUnreachable(
            f"RabbitMQ unreachable at {address} (no answer within {connect_timeout:g} s)"
        ) from None
    except CONNECTION_EXCEPTIONS as exc:
        # "from None": the original may be printed with a traceback; only the redacted reason travels.
        reason = redact(str(exc) or type(exc).__name__, amqp_url)
        raise BrokerUnreachable(f"RabbitMQ unreachable at {address} ({reason})") from None


async def require_exchange(connection: AbstractConnection, topology: Topology, exchange: str) -> None:
    """Check passively (no permission needed) that ``exchange`` exists; raise :class:`TopologyError` if not.

    For producers that declare nothing: publishing to or binding to a missing exchange would close the
    channel with a less helpful error.
    """
    if await missing_exchanges(connection, [exchange]):
        raise TopologyError(
            f"RabbitMQ holds no exchange {exchange!r}: check the prefix ({topology.prefix!r}), or have "
            f"`recalls topology` run once with RECALLS_PREFIX={topology.prefix} as a broker user that may "
            "configure (or connect with declare=True as one)"
        )
