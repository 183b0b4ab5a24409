"""What a publisher needs to know to reach the fleet: the broker URL, the prefix, and a few choices.

:class:`PublisherConfig` is all another team's system configures to publish commands
(:class:`recalls.Publisher`) or follow their outcomes (:func:`recalls.events`), instead of the product-wide
:class:`recalls.shared.settings.Settings` and its ``.env`` file. It is checked when built, and its repr never
shows the broker password. :meth:`PublisherConfig.from_env` reads it from the same ``RECALLS_*`` environment
variables the fleet reads, and from nothing else (no ``.env`` file); :func:`publisher_config` is the one place
where the fleet's own code turns its settings into one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from recalls.shared.broker_urls import BrokerUrlError, BrokerUrls
from recalls.shared.topology import (
    DEFAULT_COMMAND_QUEUE_MAX_LENGTH,
    DEFAULT_PREFIX,
    DEFAULT_RETRY_TIERS,
    PREFIX_PATTERN,
    Topology,
)

if TYPE_CHECKING:  # the publisher library does not import pydantic-settings
    from recalls.shared.settings import Settings

ENV_PREFIX = "RECALLS_"
DEFAULT_NAME = "recalls-publisher"
CONNECT_TIMEOUT = 5.0
CONFIRM_TIMEOUT = 30.0
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class PublisherConfigError(ValueError):
    """A configuration that cannot serve; ``problems`` has one ``name: reason`` line per value at fault.

    ``name`` is the field, or the environment variable it was read from; the value is never shown.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid publisher configuration: " + "; ".join(problems))


@dataclass(frozen=True)
class PublisherConfig:
    """How to reach the fleet's broker, and what a publisher may do there.

    * ``amqp_url``: ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS), or a cluster's
      nodes separated by commas (:mod:`recalls.shared.broker_urls`); never shown by ``repr``/``str``,
      which mask its passwords.
    * ``prefix``: the fleet's ``RECALLS_PREFIX``; every exchange and queue name starts with it.
    * ``declare``: False (the default) declares nothing: connecting checks passively that
      ``<prefix>.commands`` exists, and a command whose queue is missing raises ``Unroutable``.
      True declares whatever of the fleet's topology is missing, as the fleet's own processes do; it
      needs a broker user that may configure, and ``retry_tiers`` and ``command_queue_max_length`` as
      the fleet has them (a queue declared with other arguments is refused).
    * ``connect_timeout``: seconds to reach the broker before ``BrokerUnreachable``.
    * ``confirm_timeout``: seconds to wait for the broker's confirm of one publish before
      ``PublishFailed``.
    * ``name``: the connection's name in RabbitMQ's management UI: name it after your system.
    """

    amqp_url: str = dataclasses.field(repr=False)
    _: KW_ONLY
    prefix: str = DEFAULT_PREFIX
    declare: bool = False
    connect_timeout: float = CONNECT_TIMEOUT
    confirm_timeout: float = CONFIRM_TIMEOUT
    name: str = DEFAULT_NAME
    retry_tiers: tuple[float, ...] = DEFAULT_RETRY_TIERS
    command_queue_max_length: int = DEFAULT_COMMAND_QUEUE_MAX_LENGTH

    def __post_init__(self) -> None:
        problems = _problems({field.name: getattr(self, field.name) for field in dataclasses.fields(self)})
        if problems:
            raise PublisherConfigError([f"{field}: {reason}" for field, reason in problems])

    def __repr__(self) -> str:
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["amqp_url"] = BrokerUrls.parse(self.amqp_url).masked()
        shown = [f"{name}={value!r}" for name, value in values.items()]
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def topology(self) -> Topology:
        """The names of the fleet's exchanges and queues under this prefix."""
        return Topology(self.prefix, self.retry_tiers, self.command_queue_max_length)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, name: str = DEFAULT_NAME
    ) -> PublisherConfig:
        """The configuration the ``RECALLS_*`` variables of ``environ`` (default: ``os.environ``) describe.

        Reads ``RECALLS_AMQP_URL`` (required), ``RECALLS_PREFIX``, ``RECALLS_DECLARE`` (true/false),
        ``RECALLS_CONNECT_TIMEOUT``, ``RECALLS_CONFIRM_TIMEOUT``, ``RECALLS_RETRY_TIERS`` (a JSON list,
        as the fleet reads it) and ``RECALLS_COMMAND_QUEUE_MAX_LENGTH``; an unset one takes the field's
        default.  ``name`` is the connection's, chosen by the program rather than its environment.
        Never reads a ``.env`` file.  Raises :class:`PublisherConfigError` naming each variable at
        fault and why, never its value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {"name": name}
        problems: list[str] = []
        for field, parse in _PARSERS.items():
            variable = _variable(field)
            raw = environ.get(variable)
            if raw is None:
                if field == "amqp_url":
                    problems.append(f"{variable}: must be set (the broker URL, amqp://user:password@host/)")
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                problems.append(f"{variable}: {exc}")
        return _built(values, problems)


def publisher_config(
    settings: Settings, *, name: str = DEFAULT_NAME, declare: bool = True
) -> PublisherConfig:
    """The fleet's own publisher configuration, from its settings: the one place that converts them.

    ``declare`` stays True for the fleet's processes (the CLI, the importers, the batch API): they have
    always ensured the topology, declaring what is missing when their broker user may.  Raises
    :class:`PublisherConfigError` naming the ``RECALLS_*`` variable at fault.
    """
    values = {
        "amqp_url": settings.amqp_url.get_secret_value(),
        "prefix": settings.prefix,
        "retry_tiers": tuple(settings.retry_tiers),
        "command_queue_max_length": settings.command_queue_max_length,
        "declare": declare,
        "name": name,
    }
    return _built(values, [])


def _built(values: dict[str, Any], problems: list[str]) -> PublisherConfig:
    """A config of ``values``, or one error naming the variable of each value at fault, and ``problems``."""
    problems = problems + [f"{_variable(field)}: {reason}" for field, reason in _problems(values)]
    if problems:
        raise PublisherConfigError(problems)
    return PublisherConfig(**values)


def _variable(field: str) -> str:
    """The environment variable a field is read from; the field itself for ``name``, read from none."""
    return f"{ENV_PREFIX}{field.upper()}" if field in _PARSERS else field


def _problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, reason)`` for each of ``values`` that no config may hold; absent fields are not checked."""
    problems = []
    for field, value in values.items():
        reason = _CHECKS[field](value)
        if reason is not None:
            problems.append((field, reason))
    return problems


def _url_problem(url: object) -> str | None:
    if not isinstance(url, str):
        return "must be a string"
    try:
        BrokerUrls.parse(url)
    except BrokerUrlError as exc:
        return str(exc)
    return None


def _prefix_problem(prefix: object) -> str | None:
    if isinstance(prefix, str) and re.fullmatch(PREFIX_PATTERN, prefix):
        return None
    return "must be 1 to 64 letters, digits, _ . or -, starting with a letter or digit"


def _bool_problem(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _seconds_problem(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return None
    return "must be a number of seconds greater than 0"


def _name_problem(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must not be empty"


def _tiers_problem(value: object) -> str | None:
    if isinstance(value, tuple) and value and all(_seconds_problem(tier) is None for tier in value):
        return None
    return "must be a list of one or more delays in seconds, each greater than 0"


def _length_problem(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return None
    return "must be a whole number greater than 0"


_CHECKS: dict[str, Callable[[object], str | None]] = {
    "amqp_url": _url_problem,
    "prefix": _prefix_problem,
    "declare": _bool_problem,
    "connect_timeout": _seconds_problem,
    "confirm_timeout": _seconds_problem,
    "name": _name_problem,
    "retry_tiers": _tiers_problem,
    "command_queue_max_length": _length_problem,
}


def _bool(raw: str) -> bool:
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError("must be true or false")


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("must be a number of seconds greater than 0") from None


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("must be a whole number greater than 0") from None


def _tiers(raw: str) -> tuple[float, ...]:
    try:
        return msgspec.json.decode(raw, type=tuple[float, ...])
    except msgspec.DecodeError:
        raise ValueError("must be a JSON list of delays in seconds, such as [1, 5, 30]") from None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "amqp_url": str,
    "prefix": str,
    "declare": _bool,
    "connect_timeout": _float,
    "confirm_timeout": _float,
    "retry_tiers": _tiers,
    "command_queue_max_length": _int,
}
