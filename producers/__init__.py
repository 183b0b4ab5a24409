"""The publisher library: everything a system needs to publish recall commands and follow their outcomes.

Import what you need from here; the modules behind these names may move.  Importing this package loads
the AMQP client and msgspec, nothing of the fleet's web, database or settings stack.  The test double
lives apart, in :mod:`producers.testing`.  The CLI, importers and batch API are modules of this package
too, but nothing here needs them.
"""

from producers.broker import BrokerUnreachable
from producers.config import PublisherConfig, PublisherConfigError
from producers.events import events
from producers.publisher import Publisher, PublishResult, QueueFull
from producers.sync_publisher import SyncPublisher
from shared.amqp import PublishFailed, Unroutable
from shared.contracts import (
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    Lane,
    OutcomeEvent,
)
from shared.message_ids import message_id_for
from shared.topology import TopologyError
from shared.validation import InvalidCommand

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
