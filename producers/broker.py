"""Connecting a producer to RabbitMQ: quickly, and naming the broker without its credentials.

A producer is a short-lived command or a request handler of another system, so it must learn within
seconds that the broker is down rather than wait on it.  Errors name host and port only, because
``RECALLS_AMQP_URL`` may carry a password and error text ends up in logs and terminals.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import AuthenticationError, ProbableAuthenticationError

from recalls.shared.amqp import broker_url
from recalls.shared.settings import Settings

CONNECT_TIMEOUT = 5.0
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


class BrokerUnreachable(ConnectionError):
    """RabbitMQ could not be reached or refused the login.  The message never holds the password."""


def broker_address(settings: Settings) -> str:
    """``host:port`` of the configured broker, safe to print."""
    url = urlsplit(settings.amqp_url.get_secret_value())
    try:
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 5672)
    except ValueError:  # a port that is not a number: show the host alone
        return url.hostname or "?"
    return f"{url.hostname or '?'}:{port}"


def redact(text: str, settings: Settings) -> str:
    """``text`` with the broker password (if any) masked, for messages that quote a library's error."""
    password = urlsplit(settings.amqp_url.get_secret_value()).password
    return text.replace(password, "***") if password else text


async def connect(
    settings: Settings, *, name: str, connect_timeout: float = CONNECT_TIMEOUT
) -> AbstractRobustConnection:
    """A robust connection named ``name``; raise :class:`BrokerUnreachable` within ``connect_timeout`` s.

    ``connect_robust`` fails fast on the *first* attempt (its ``fail_fast`` default) and reconnects by
    itself afterwards; the timeout bounds a broker that accepts TCP but never answers.
    """
    address = broker_address(settings)
    try:
        return await aio_pika.connect_robust(
            broker_url(settings),
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
        reason = redact(str(exc) or type(exc).__name__, settings)
        raise BrokerUnreachable(f"RabbitMQ unreachable at {address} ({reason})") from None
