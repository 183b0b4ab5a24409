"""Which broker users the workers believe: commands from the publishers, history and events from the fleet.

A message's AMQP ``user_id`` names its sender: RabbitMQ refuses one that is not the user of the
publishing connection, and the fleet stamps its own (:func:`recalls.shared.amqp.publish_body_confirmed`).
So a worker takes commands from ``RECALLS_PUBLISHER_USERS`` and the fleet's own users (retries come back
from the retry queues carrying the worker's user_id), and believes attempt headers and outcome events
only from ``RECALLS_FLEET_USERS`` (by default the user of ``RECALLS_AMQP_URL``).
"""

from __future__ import annotations

from dataclasses import dataclass

from recalls.shared.broker_urls import BrokerUrls
from recalls.shared.settings import Settings

UNTRUSTED_SENDER = "untrusted_sender"


@dataclass(frozen=True)
class Senders:
    fleet: frozenset[str]
    publishers: frozenset[str]  # empty: any sender's commands are taken

    @classmethod
    def of(cls, settings: Settings) -> Senders:
        own = BrokerUrls.parse(settings.amqp_url.get_secret_value()).user
        fleet = settings.fleet_users or ((own,) if own is not None else ())
        return cls(fleet=frozenset(fleet), publishers=frozenset(settings.publisher_users))

    @property
    def anyone_commands(self) -> bool:
        return not self.publishers

    def is_fleet(self, user_id: str | None) -> bool:
        return user_id in self.fleet

    def may_command(self, user_id: str | None) -> bool:
        return self.anyone_commands or user_id in self.publishers or self.is_fleet(user_id)

    def refusal(self, user_id: str | None, listed_in: str) -> str:
        """The dead letter's reason for a message from ``user_id``, who is not listed in ``listed_in``."""
        sender = f"broker user {user_id!r}" if user_id else "a message without user_id"
        return f"{UNTRUSTED_SENDER}: {sender} is not in {listed_in}"
