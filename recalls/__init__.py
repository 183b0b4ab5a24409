"""The recalls fleet's one import root: everything the project installs lives below ``recalls``.

Each part of the architecture is a package of its own, kept in the repository's top-level folder of the
same role (the packages here are links to those folders):

* ``recalls.shared``: what every part agrees on: settings, wire contracts, validation, topology, the DVSA
  client and token cache, the rate limiter, the store;
* ``recalls.producers``: what turns an intent into recall commands on RabbitMQ: the publisher library,
  the ``publish``, ``import``, ``sync``, ``topology``, ``schemas`` and ``api`` commands, the batch API;
* ``recalls.workers``: what consumes: the worker runtime, decisions on DVSA's replies, retries, outcome
  reporting, the event recorder and the webhook sender;
* ``recalls.sandbox``: the DVSA sandbox, a stand-in for DVSA's Vehicle Recalls API (``recalls simulator``);
* ``recalls.cli``: the ``recalls`` command, the one place that wires every part's commands together.

``recalls.shared`` depends on none of the others; producers and workers never import each other, nor the
sandbox or the CLI (import-linter contracts in ``pyproject.toml``).

The names below are the publisher library: everything a system needs to publish recall commands and
follow their outcomes (``__all__`` is pinned by a test).  Each is loaded on first use, so importing a
module below ``recalls`` loads what that module needs and not the publisher; the names themselves load the
AMQP client and msgspec, nothing of the fleet's web, database or settings stack.  The test double is
:mod:`recalls.testing`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recalls.producers.config import PublisherConfig, PublisherConfigError
    from recalls.producers.events import events
    from recalls.producers.publisher import Publisher, PublishResult, QueueFull
    from recalls.producers.sync_publisher import SyncPublisher
    from recalls.shared.amqp import BrokerUnreachable, PublishFailed, Unroutable
    from recalls.shared.contracts import (
        Command,
        CreateCommand,
        DeleteCommand,
        FixCommand,
        GetCommand,
        Lane,
        OutcomeEvent,
    )
    from recalls.shared.message_ids import message_id_for
    from recalls.shared.topology import TopologyError
    from recalls.shared.validation import InvalidCommand

__all__ = [
    "BrokerUnreachable",
    "Command",
    "CreateCommand",
    "DeleteCommand",
    "FixCommand",
    "GetCommand",
    "InvalidCommand",
    "Lane",
    "OutcomeEvent",
    "PublishFailed",
    "PublishResult",
    "Publisher",
    "PublisherConfig",
    "PublisherConfigError",
    "QueueFull",
    "SyncPublisher",
    "TopologyError",
    "Unroutable",
    "events",
    "message_id_for",
]

# Where each public name lives: the same imports as above, made on first use (a test holds the two equal).
_HOMES = {
    "PublisherConfig": "recalls.producers.config",
    "PublisherConfigError": "recalls.producers.config",
    "events": "recalls.producers.events",
    "Publisher": "recalls.producers.publisher",
    "PublishResult": "recalls.producers.publisher",
    "QueueFull": "recalls.producers.publisher",
    "SyncPublisher": "recalls.producers.sync_publisher",
    "BrokerUnreachable": "recalls.shared.amqp",
    "PublishFailed": "recalls.shared.amqp",
    "Unroutable": "recalls.shared.amqp",
    "Command": "recalls.shared.contracts",
    "CreateCommand": "recalls.shared.contracts",
    "DeleteCommand": "recalls.shared.contracts",
    "FixCommand": "recalls.shared.contracts",
    "GetCommand": "recalls.shared.contracts",
    "Lane": "recalls.shared.contracts",
    "OutcomeEvent": "recalls.shared.contracts",
    "message_id_for": "recalls.shared.message_ids",
    "TopologyError": "recalls.shared.topology",
    "InvalidCommand": "recalls.shared.validation",
}


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# Hidden from the type checker, which would otherwise take any misspelt ``recalls.X`` for a lazy name.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later lookups find it without coming here
        return value
