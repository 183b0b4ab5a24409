"""Test doubles for systems that publish to the fleet: publish in tests without a RabbitMQ.

:class:`InMemoryPublisher` refuses exactly what :class:`recalls.Publisher` refuses and records what it
would have sent.
"""

from recalls.producers.testing import InMemoryPublisher, Published

__all__ = ["InMemoryPublisher", "Published"]
