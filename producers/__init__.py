"""Everything that turns an intent into recall commands on RabbitMQ: the publisher library and its CLI."""

from recalls.producers.broker import BrokerUnreachable
from recalls.producers.publisher import Publisher, PublishResult
from recalls.shared.contracts import Lane

__all__ = ["BrokerUnreachable", "Lane", "PublishResult", "Publisher"]
