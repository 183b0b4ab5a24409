"""Everything that turns an intent into recall commands on RabbitMQ: the publisher library and its CLI."""

from producers.broker import BrokerUnreachable
from producers.publisher import Publisher, PublishResult
from shared.contracts import Lane

__all__ = ["BrokerUnreachable", "Lane", "PublishResult", "Publisher"]
