"""Whose messages the workers believe, from the settings' lists and the broker URL's user."""

from __future__ import annotations

import pytest

from recalls.shared.amqp import is_own_reply_queue
from recalls.shared.broker_urls import broker_user
from recalls.shared.settings import load_settings
from recalls.workers.senders import Senders


@pytest.mark.parametrize(
    ("url", "user"),
    [
        ("amqp://worker:pw@mq:5672/", "worker"),
        ("amqp://fleet%40eu:pw@mq/", "fleet@eu"),
        ("amqp://mq/", "guest"),  # aiormq logs in as guest when the URL names nobody
        ("amqps://mq/?auth=EXTERNAL", None),  # the client certificate names the user
    ],
)
def test_the_broker_user_of_a_url(url: str, user: str | None) -> None:
    assert broker_user(url) == user


def test_without_fleet_users_the_fleet_is_the_user_of_the_broker_url() -> None:
    senders = Senders.of(load_settings(amqp_url="amqp://worker:pw@mq/"))
    assert senders.is_fleet("worker") and not senders.is_fleet("guest") and not senders.is_fleet(None)
    assert senders.anyone_commands and senders.may_command(None)


def test_with_publisher_users_only_they_and_the_fleet_may_command() -> None:
    senders = Senders.of(load_settings(publisher_users=("erp",), fleet_users=("worker", "api")))
    assert [senders.may_command(user) for user in ("erp", "worker", "api", "guest", None)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert not senders.is_fleet("erp")
    assert senders.refusal("guest", "RECALLS_FLEET_USERS") == (
        "untrusted_sender: broker user 'guest' is not in RECALLS_FLEET_USERS"
    )


@pytest.mark.parametrize(
    ("name", "owned"),
    [
        ("amq.gen-JzTY20BRgKO-HjmUJj0wLg", True),
        ("amq.rabbitmq.reply-to", True),
        ("amq.rabbitmq.reply-to.g1h2AA5yZXBseQ", True),
        ("recalls.ledger", False),
        ("other-deployment.create", False),
        ("", False),
    ],
)
def test_a_reply_queue_is_the_senders_own_only_when_the_broker_named_it(name: str, owned: bool) -> None:
    assert is_own_reply_queue(name) is owned
