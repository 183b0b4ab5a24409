"""A publisher's configuration: read from RECALLS_* variables only, checked, never showing the password."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from recalls.producers.config import PublisherConfig, PublisherConfigError, publisher_config
from recalls.shared.broker_urls import masked_url
from recalls.shared.settings import Settings, SettingsError, load_settings
from recalls.shared.topology import PREFIX_PATTERN, Topology

URL = "amqp://team:s3cret-pw@broker.example:5672/fleet"
pytestmark = pytest.mark.usefixtures("clean_env")


def test_the_defaults_are_the_fleets() -> None:
    config, fields = PublisherConfig(URL), Settings.model_fields
    assert config.prefix == fields["prefix"].default
    assert tuple(config.retry_tiers) == tuple(fields["retry_tiers"].default)
    assert config.command_queue_max_length == fields["command_queue_max_length"].default
    assert {"pattern": PREFIX_PATTERN} in [vars(rule) for rule in fields["prefix"].metadata]
    assert config.declare is False
    assert config.topology == Topology("recalls")


def test_repr_and_str_mask_the_password() -> None:
    config = PublisherConfig(URL, prefix="acme", name="orders")
    for shown in (repr(config), str(config), f"{config}"):
        assert "s3cret-pw" not in shown
        assert "amqp://team:***@broker.example:5672/fleet" in shown
        assert "prefix='acme'" in shown and "name='orders'" in shown
    assert config.amqp_url == URL  # the connection still gets the password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://broker.example/", "amqp://broker.example/"),
        ("amqps://team@broker.example/", "amqps://team@broker.example/"),
        ("amqp://team:p%40ss@broker.example/?heartbeat=5", "amqp://team:***@broker.example/?heartbeat=5"),
        ("amqp://:only-pw@broker.example/", "amqp://:***@broker.example/"),
    ],
)
def test_a_masked_url_keeps_everything_but_the_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_it_is_frozen() -> None:
    config = PublisherConfig(URL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.prefix = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"amqp_url": "http://broker.example/"}, "amqp_url: must be an amqp:// or amqps:// URL naming"),
        ({"amqp_url": "amqp://h:port/"}, "amqp_url: must be an amqp:// or amqps:// URL with a valid port"),
        ({"prefix": "-bad"}, "prefix: must be 1 to 64 letters, digits, _ . or -, starting with a letter"),
        ({"connect_timeout": 0}, "connect_timeout: must be a number of seconds greater than 0"),
        ({"confirm_timeout": float("nan")}, "confirm_timeout: must be a number of seconds greater than 0"),
        ({"name": " "}, "name: must not be empty"),
        ({"retry_tiers": ()}, "retry_tiers: must be a list of one or more delays in seconds"),
        ({"command_queue_max_length": 0}, "command_queue_max_length: must be a whole number greater than 0"),
        ({"declare": "yes"}, "declare: must be true or false"),
    ],
)
def test_a_bad_field_is_named_with_the_reason(fields: dict[str, object], expected: str) -> None:
    values = {"amqp_url": URL, **fields}
    with pytest.raises(PublisherConfigError) as caught:
        PublisherConfig(**values)  # type: ignore[arg-type]
    assert expected in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_from_env_reads_the_recalls_variables() -> None:
    environ = {
        "RECALLS_AMQP_URL": URL,
        "RECALLS_PREFIX": "acme-prod",
        "RECALLS_DECLARE": "TRUE",
        "RECALLS_CONNECT_TIMEOUT": "2.5",
        "RECALLS_CONFIRM_TIMEOUT": "12",
        "RECALLS_RETRY_TIERS": "[1, 5]",
        "RECALLS_COMMAND_QUEUE_MAX_LENGTH": "500",
        "RECALLS_DVSA_API_KEY": "not a publisher's business",
    }
    config = PublisherConfig.from_env(environ, name="orders")
    assert config == PublisherConfig(
        URL,
        prefix="acme-prod",
        declare=True,
        connect_timeout=2.5,
        confirm_timeout=12.0,
        name="orders",
        retry_tiers=(1.0, 5.0),
        command_queue_max_length=500,
    )


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALLS_AMQP_URL", URL)
    monkeypatch.setenv("RECALLS_PREFIX", "from-os")
    assert PublisherConfig.from_env().prefix == "from-os"


def test_from_env_never_reads_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"RECALLS_AMQP_URL={URL}\n")
    with pytest.raises(PublisherConfigError, match="RECALLS_AMQP_URL: must be set"):
        PublisherConfig.from_env({})


def test_from_env_names_every_bad_variable_and_never_its_value() -> None:
    environ = {
        "RECALLS_PREFIX": "s3cret-pw/",
        "RECALLS_DECLARE": "s3cret-pw",
        "RECALLS_CONNECT_TIMEOUT": "s3cret-pw",
        "RECALLS_CONFIRM_TIMEOUT": "-1",
        "RECALLS_RETRY_TIERS": "s3cret-pw",
        "RECALLS_COMMAND_QUEUE_MAX_LENGTH": "1.5",
    }
    with pytest.raises(PublisherConfigError) as caught:
        PublisherConfig.from_env(environ)
    assert sorted(problem.split(":", 1)[0] for problem in caught.value.problems) == [
        "RECALLS_AMQP_URL",
        "RECALLS_COMMAND_QUEUE_MAX_LENGTH",
        "RECALLS_CONFIRM_TIMEOUT",
        "RECALLS_CONNECT_TIMEOUT",
        "RECALLS_DECLARE",
        "RECALLS_PREFIX",
        "RECALLS_RETRY_TIERS",
    ]
    assert "RECALLS_AMQP_URL: must be set" in str(caught.value)
    assert "RECALLS_RETRY_TIERS: must be a JSON list of delays in seconds" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_a_bad_url_from_env_is_named_by_its_variable() -> None:
    with pytest.raises(PublisherConfigError) as caught:
        PublisherConfig.from_env({"RECALLS_AMQP_URL": "https://team:s3cret-pw@broker.example/"})
    assert caught.value.problems == ["RECALLS_AMQP_URL: must be an amqp:// or amqps:// URL naming a host"]


def test_the_fleet_converts_its_settings_in_one_place() -> None:
    settings = load_settings(
        amqp_url=URL, prefix="acme", retry_tiers=(1, 2), command_queue_max_length=7, dvsa_timeout=3
    )
    config = publisher_config(settings, name="recalls-cli publish")
    assert config == PublisherConfig(
        URL,
        prefix="acme",
        declare=True,  # the fleet's processes have always ensured the topology
        name="recalls-cli publish",
        retry_tiers=(1.0, 2.0),
        command_queue_max_length=7,
    )
    assert publisher_config(settings, declare=False).declare is False


def test_a_broker_url_no_publisher_can_use_is_refused_with_the_settings_named_by_its_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(amqp_url="redis://team:s3cret-pw@broker.example/")
    assert "RECALLS_AMQP_URL: must be an amqp:// or amqps:// URL naming a host" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
