"""Running a command's work against RabbitMQ: the CLI's one routine for the broker's failures.

Each failure becomes one error line naming the broker by host and port, never its password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from recalls.cli.errors import InputError, ServiceError
from recalls.producers.config import PublisherConfigError
from recalls.shared.amqp import BrokerUnreachable, PublishFailed
from recalls.shared.broker_urls import BrokerUrls
from recalls.shared.settings import Settings
from recalls.shared.topology import TopologyError

_T = TypeVar("_T")


def run_with_broker(work: Coroutine[Any, Any, _T], settings: Settings) -> _T:
    """Run ``work``, turning broker failures into one-line errors without the password."""
    urls = BrokerUrls.parse(settings.amqp_url.get_secret_value())
    try:
        with _quiet_amqp_libraries():
            return asyncio.run(work)
    except PublisherConfigError as exc:  # a RECALLS_* variable the publisher cannot use
        raise InputError(str(exc)) from None
    except BrokerUnreachable as exc:
        raise ServiceError(str(exc)) from None
    except PublishFailed as exc:
        raise ServiceError(f"RabbitMQ did not take the command: {exc}") from None
    except TopologyError as exc:
        raise ServiceError(str(exc)) from None
    except ChannelNotFoundEntity as exc:
        raise ServiceError(
            f"RabbitMQ at {urls.addresses} has no such queue or exchange "
            f"({urls.redact(str(exc))}); run: recalls topology"
        ) from None
    except (AMQPError, ConnectionError) as exc:
        raise ServiceError(
            f"RabbitMQ at {urls.addresses} refused or went away: "
            f"{urls.redact(str(exc) or type(exc).__name__)}"
        ) from None


@contextmanager
def _quiet_amqp_libraries() -> Iterator[None]:
    """A failure is reported once, as the command's error line; aiormq would also log it, differently."""
    loggers = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
