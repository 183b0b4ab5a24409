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
follow their outcomes (``__all__`` is pinned by a test).  Importing them loads the AMQP client and msgspec,
nothing of the fleet's web, database or settings stack.  The test double is :mod:`recalls.testing`.
"""

from recalls.producers.broker import BrokerUnreachable
from recalls.producers.config import PublisherConfig, PublisherConfigError
from recalls.producers.events import events
from recalls.producers.publisher import Publisher, PublishResult, QueueFull
from recalls.producers.sync_publisher import SyncPublisher
from recalls.shared.amqp import PublishFailed, Unroutable
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
