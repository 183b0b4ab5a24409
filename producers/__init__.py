"""Everything that turns an intent into recall commands on RabbitMQ: the publisher library and its CLI."""

from producers.broker import BrokerUnreachable
from producers.publisher import Lane, Publisher, PublishResult

__all__ = ["BrokerUnreachable", "Lane", "PublishResult", "Publisher"]
