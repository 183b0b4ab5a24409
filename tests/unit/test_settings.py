"""Settings come from RECALLS_* variables and bad ones are named without echoing their values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recalls.shared.settings import SettingsError, load_settings

pytestmark = pytest.mark.usefixtures("clean_env")


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


NOT_DVSA = "(without it the fleet talks to the local sandbox, not to DVSA)"
CREDENTIALS = {
    "RECALLS_DVSA_CLIENT_ID": "real-id",
    "RECALLS_DVSA_CLIENT_SECRET": "real-secret-value",
    "RECALLS_DVSA_SCOPE": "api://dvsa/.default",
    "RECALLS_DVSA_API_KEY": "real-api-key-123",
}
HTTPS_DVSA = {
    "RECALLS_DVSA_BASE_URL": "https://dvsa.invalid",
    "RECALLS_DVSA_TOKEN_URL": "https://login.invalid/t/oauth2/v2.0/token",
    **CREDENTIALS,
}


def refusal(*lines: str) -> str:
    return "invalid configuration:\n  " + "\n  ".join(lines)


@pytest.mark.parametrize(("name", "value"), CREDENTIALS.items())
def test_a_credential_without_a_base_url_is_refused_where_the_fleet_looks_for_dvsa(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    settings = load_settings()  # the sandbox reads these settings to learn which credentials to accept
    assert settings.uses_sandbox
    expected = refusal(f"RECALLS_DVSA_BASE_URL: must be set when {name} is set {NOT_DVSA}")
    with pytest.raises(SettingsError) as caught:
        _ = settings.effective_base_url
    assert str(caught.value) == expected
    with pytest.raises(SettingsError) as caught:
        _ = settings.effective_token_url
    assert str(caught.value) == expected
    assert value not in expected


def test_each_credential_without_a_base_url_has_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        _ = load_settings().effective_base_url
    assert str(caught.value) == refusal(
        *(f"RECALLS_DVSA_BASE_URL: must be set when {name} is set {NOT_DVSA}" for name in CREDENTIALS)
    )
    assert caught.value.exit_code == 2  # a command that meets it exits 2, as with any bad setting


def test_a_token_url_without_a_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALLS_DVSA_TOKEN_URL", "https://login.invalid/t/oauth2/v2.0/token")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == refusal(
        f"RECALLS_DVSA_BASE_URL: must be set when RECALLS_DVSA_TOKEN_URL is set {NOT_DVSA}"
    )


@pytest.mark.parametrize("credentials", [CREDENTIALS, {}], ids=["own credentials", "sandbox defaults"])
def test_a_sandbox_named_explicitly_takes_any_credentials(
    monkeypatch: pytest.MonkeyPatch, credentials: dict[str, str]
) -> None:
    monkeypatch.setenv("RECALLS_DVSA_BASE_URL", "http://127.0.0.1:8900")
    monkeypatch.setenv("RECALLS_DVSA_TOKEN_URL", "http://127.0.0.1:8900/oauth2/v2.0/token")
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.effective_base_url, settings.effective_token_url) == (
        "http://127.0.0.1:8900",
        "http://127.0.0.1:8900/oauth2/v2.0/token",
    )


@pytest.mark.parametrize("name", ["RECALLS_DVSA_BASE_URL", "RECALLS_DVSA_TOKEN_URL"])
@pytest.mark.parametrize("url", ["http://dvsa.invalid/api", "http://10.0.0.8:8900", "ftp://dvsa.invalid/"])
def test_a_dvsa_url_must_be_https_unless_to_loopback(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str
) -> None:
    for variable, value in {**HTTPS_DVSA, name: url}.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == refusal(
        f"{name}: must use https:// (plain http:// only to a loopback address)"
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8900", "http://127.8.9.10", "http://[::1]:8900", "http://LocalHost:8900"]
)
def test_plain_http_to_loopback_is_allowed(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for variable, value in {
        **HTTPS_DVSA,
        "RECALLS_DVSA_BASE_URL": url,
        "RECALLS_DVSA_TOKEN_URL": url,
    }.items():
        monkeypatch.setenv(variable, value)
    assert load_settings().effective_base_url == url.lower().rstrip("/")


@pytest.mark.parametrize(
    "url", ["recalls.example.com", "/v1", "ftp://recalls.example.com", "https://", "https://host:port/"]
)
def test_the_public_url_must_be_absolute_http(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("RECALLS_PUBLIC_URL", url)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == refusal("RECALLS_PUBLIC_URL: must be an absolute http:// or https:// URL")


def test_a_worker_with_a_credential_and_no_base_url_exits_2_naming_the_base_url(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RECALLS_")}
    env |= {
        "RECALLS_DVSA_CLIENT_ID": "real-id",
        # Nowhere: should the worker start after all, it waits for a broker instead of using the real one.
        "RECALLS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        "RECALLS_SQLITE_PATH": str(tmp_path / "recalls.db"),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from recalls.cli.main import main; main()", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: invalid configuration:",
        f"  RECALLS_DVSA_BASE_URL: must be set when RECALLS_DVSA_CLIENT_ID is set {NOT_DVSA}",
    ]
