"""RECALLS_AMQP_URL as one node or a cluster's nodes: parsed, checked and shown without a password."""

from __future__ import annotations

import pytest

from recalls.shared.broker_urls import DEFAULT_HEARTBEAT_S, BrokerUrlError, BrokerUrls

TWO = "amqp://w:pw-1@rabbit-1:5672/fleet, amqp://w:pw-1@rabbit-2:5673/fleet"


def test_one_url_is_one_node() -> None:
    urls = BrokerUrls.parse("amqp://guest:guest@127.0.0.1:5672/")
    assert urls.urls == ("amqp://guest:guest@127.0.0.1:5672/",)
    assert (urls.addresses, urls.user) == ("127.0.0.1:5672", "guest")


def test_a_comma_separated_list_is_a_cluster_tried_in_order() -> None:
    urls = BrokerUrls.parse(TWO)
    assert urls.urls == ("amqp://w:pw-1@rabbit-1:5672/fleet", "amqp://w:pw-1@rabbit-2:5673/fleet")
    assert urls.addresses == "rabbit-1:5672, rabbit-2:5673"
    assert urls.user == "w"
    assert [u.endswith(f"heartbeat={DEFAULT_HEARTBEAT_S}") for u in urls.with_heartbeat()] == [True, True]


def test_nothing_shown_holds_a_password() -> None:
    urls = BrokerUrls.parse("amqps://w:p%2Cw@rabbit-1/,amqps://w:p%2Cw@rabbit-2/")  # a comma, escaped
    assert urls.masked() == "amqps://w:***@rabbit-1/,amqps://w:***@rabbit-2/"
    assert urls.redact("login p%2Cw failed; p,w refused") == "login *** failed; *** refused"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must be an amqp:// or amqps:// URL, or several separated by commas"),
        ("redis://w:secret@h/", "must be an amqp:// or amqps:// URL naming a host"),
        ("amqp://w:secret@h:port/", "must be an amqp:// or amqps:// URL with a valid port"),
        ("amqp://w:secret@h1/,", "entry 2: must be an amqp:// or amqps:// URL naming a host"),
        ("amqp://w:secret@h1/,amqp://other:secret@h2/", "entry 2: names another user or virtual host"),
        ("amqp://w:secret@h1/a,amqp://w:secret@h2/b", "entry 2: names another user or virtual host"),
    ],
)
def test_a_list_that_is_no_cluster_is_refused_naming_the_entry(text: str, reason: str) -> None:
    with pytest.raises(BrokerUrlError) as refused:
        BrokerUrls.parse(text)
    assert str(refused.value).startswith(reason)
    assert "secret" not in str(refused.value)
