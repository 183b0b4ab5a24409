"""Settings come from RECALLS_* variables and bad ones are named without echoing their values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("RECALLS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_talk_to_the_sandbox() -> None:
    settings = load_settings()
    assert settings.uses_sandbox
    assert settings.rate_limit == 25
    assert settings.prefix == "recalls"
    assert settings.effective_base_url == "http://127.0.0.1:8900"
    assert settings.effective_token_url == "http://127.0.0.1:8900/oauth2/v2.0/token"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALLS_RATE_LIMIT", "10")
    monkeypatch.setenv("RECALLS_PREFIX", "acme-prod")
    monkeypatch.setenv("RECALLS_REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.rate_limit == 10
    assert settings.prefix == "acme-prod"
    assert settings.redis_url is not None


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RECALLS_RATE_LIMIT=7\n")
    assert load_settings().rate_limit == 7


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("RECALLS_RATE_LIMIT", "0", "greater than 0"),
        ("RECALLS_RATE_LIMIT", "lots", "valid integer"),
        ("RECALLS_PREFIX", "has space", "match pattern"),
        ("RECALLS_DVSA_BASE_URL", "not a url", "URL"),
        ("RECALLS_SANDBOX_PORT", "70000", "less than 65536"),
    ],
)
def test_bad_variable_is_named_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    line = next(line for line in str(caught.value).splitlines() if name in line)
    assert reason in line


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALLS_DVSA_API_KEY", "tiny-key")  # too short: refused
    monkeypatch.setenv("RECALLS_DVSA_CLIENT_SECRET", "")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "RECALLS_DVSA_API_KEY" in text
    assert "RECALLS_DVSA_CLIENT_SECRET" in text
    assert "tiny-key" not in text


def test_real_dvsa_needs_token_url_and_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALLS_DVSA_BASE_URL", "https://dvsa.invalid")
    with pytest.raises(SettingsError, match="RECALLS_DVSA_TOKEN_URL"):
        load_settings()
    monkeypatch.setenv("RECALLS_DVSA_TOKEN_URL", "https://login.invalid/t/oauth2/v2.0/token")
    with pytest.raises(SettingsError, match="RECALLS_DVSA_CLIENT_ID"):
        load_settings()
    for name, value in {
        "CLIENT_ID": "real-id",
        "CLIENT_SECRET": "real-secret-value",
        "SCOPE": "api://dvsa/.default",
        "API_KEY": "real-api-key-123",
    }.items():
        monkeypatch.setenv(f"RECALLS_DVSA_{name}", value)
    settings = load_settings()
    assert not settings.uses_sandbox
    assert settings.effective_base_url == "https://dvsa.invalid"


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALLS_DVSA_CLIENT_SECRET", "s3cr3t-value")
    monkeypatch.setenv("RECALLS_AMQP_URL", "amqp://u:hunter2@127.0.0.1:5672/")
    text = repr(load_settings())
    assert "s3cr3t-value" not in text
    assert "hunter2" not in text
