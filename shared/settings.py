"""Settings of the whole product, read from ``RECALLS_*`` environment variables (and an optional ``.env``).

Everything that talks to a service takes a :class:`Settings` instance as an argument; nothing reads the
environment at import time.  :func:`load_settings` turns pydantic's validation errors into one message per
bad variable that names the variable and the reason, and never echoes the value (it may be a secret).

Misconfiguration fails closed.  What is wrong whoever reads the settings is refused when they are loaded:
a DVSA URL over plain http to anything but loopback, a token URL without a base URL.
DVSA credentials without a base URL are refused where the fleet works out where
DVSA is (:attr:`Settings.effective_base_url`, :attr:`Settings.effective_token_url`): the fleet would present
them to the local sandbox and report success, but the sandbox itself reads the same settings to learn
which credentials to accept, and must go on starting with custom ones.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import click
from pydantic import (
    AnyUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from recalls.shared.broker_urls import BrokerUrls
from recalls.shared.redis_urls import check_redis_url

ENV_PREFIX = "RECALLS_"
# Where the sandbox serves the token endpoint (Azure AD's path, as DVSA's clients call it).
SANDBOX_TOKEN_PATH = "/oauth2/v2.0/token"  # noqa: S105 (a path, not a password)
_CREDENTIALS = ("dvsa_client_id", "dvsa_client_secret", "dvsa_scope", "dvsa_api_key")
_NOT_DVSA = "without it the fleet talks to the local sandbox, not to DVSA"


class SettingsError(click.ClickException):
    """Raised when the environment does not describe a valid configuration.

    A command that meets one anywhere exits 2 with ``error: <message>``, like a bad option.
    """

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class Settings(BaseSettings):
    """The product's configuration.  Field ``x`` is read from ``RECALLS_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="RabbitMQ connection URL, or the URLs of a cluster's nodes separated by commas (each "
        "may hold a password, so it is treated as a secret).",
    )
    prefix: str = Field(
        "recalls",
        description="Every exchange and queue name starts with this, so deployments can share a broker.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    )
    dvsa_base_url: AnyUrl | None = Field(
        None,
        description="DVSA API base URL (https, or http to a loopback address). Unset: the local DVSA "
        "sandbox is used, and only with the sandbox's own credentials.",
    )
    dvsa_token_url: AnyUrl | None = Field(
        None,
        description="OAuth2 token URL (https, or http to a loopback address); only with a base URL. "
        "Unset: the sandbox's token endpoint.",
    )
    dvsa_client_id: str = Field("recalls-sandbox-client", min_length=1)
    dvsa_client_secret: SecretStr = Field(SecretStr("recalls-sandbox-secret"))
    dvsa_scope: str = Field("api://recalls-sandbox/.default", min_length=1)
    dvsa_api_key: SecretStr = Field(SecretStr("recalls-sandbox-api-key"))
    rate_limit: int = Field(25, gt=0, le=10_000, description="DVSA requests per second, per verb.")
    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL (redis://, rediss://, or redis+sentinel:// naming the Sentinels and the "
        "service they watch). Set: fleet mode (one rate budget and token for all workers).",
    )
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL for the ledger and batch jobs. Unset: SQLite at `sqlite_path`."
    )
    sqlite_path: Path = Field(
        Path("recalls.db"), description="The SQLite file of the ledger and batch jobs (no database_url)."
    )
    migrate_on_start: bool | None = Field(
        None,
        description="Workers, the batch API and the commands that write apply the store's migrations when "
        "they start. Unset: only on the embedded SQLite store; a PostgreSQL store is migrated by "
        "`recalls migrate` before a rollout, and a process that finds it behind refuses to start.",
    )
    rate_margin: float = Field(
        0.002,
        ge=0,
        lt=0.5,
        description="Calls of one verb are spaced this share wider than 1/limit, and each counts until "
        "1 + margin seconds after its answer: the margin covers how DVSA rounds its window.",
    )
    prefetch: int = Field(
        32, gt=0, le=1000, description="Unacked commands per queue (verb and lane) per worker."
    )
    retry_tiers: tuple[float, ...] = Field(
        (1, 5, 30, 120, 600, 3600, 21600),
        min_length=1,
        description="Delays (s) of the retry tiers; after the last, the dead-letter queue.",
    )
    not_found_horizon: float = Field(
        86400,
        gt=0,
        description="How long (s) a fix or delete that meets 404 waits for its create to arrive.",
    )
    dvsa_timeout: float = Field(10, gt=0, description="Seconds to wait for one DVSA response.")
    token_patience: float = Field(
        30,
        ge=0,
        description="How long (s) a DVSA call waits in-process for a token while the token endpoint fails.",
    )
    shutdown_grace: float = Field(
        20, ge=0, description="Seconds a stopping worker lets in-flight commands finish."
    )
    record_events: bool = Field(
        True,
        description="This worker process also keeps the ledger and batch jobs from the outcome events. "
        "A fleet needs it in one or two processes, not all.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Where a worker serves /metrics, /healthz and /readyz (0.0.0.0: every interface).",
    )
    metrics_port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="A worker's port for /metrics, /healthz and /readyz; unset: not served. "
        "With --processes N, process k uses this port + k.",
    )
    public_url: str | None = Field(
        None,
        description="The batch API's absolute http(s) base URL for links it hands out (unset: the "
        "request's own); webhooks need it.",
    )
    batch_max_vins: int = Field(10_000, gt=0, description="Most VINs one batch check may hold.")
    check_freshness: float = Field(
        86_400, ge=0, description="Seconds a VIN's DVSA answer serves batch checks from the store."
    )
    batch_retention: float = Field(
        30 * 86_400, gt=0, description="Seconds batch jobs and their results are kept."
    )
    allow_private_urls: bool = Field(
        False,
        description="Allow http and private, loopback or link-local addresses for csvUrl and webhookUrl "
        "(tests and closed networks only).",
    )
    csv_url_allowed_hosts: tuple[str, ...] = Field(
        (), description="Hosts a csvUrl may name (empty: any public host)."
    )
    csv_url_max_bytes: int = Field(5_000_000, gt=0, description="Largest CSV fetched from a csvUrl.")
    csv_url_timeout: float = Field(30, gt=0, description="Seconds to fetch a csvUrl, redirects included.")
    csv_url_max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed for a csvUrl.")
    webhook_timeout: float = Field(30, gt=0, description="Seconds a webhook receiver has to answer.")
    publisher_users: tuple[str, ...] = Field(
        (),
        description="Broker users whose commands workers accept, by the user_id RabbitMQ validates "
        "(empty: any, with a warning at start).",
    )
    fleet_users: tuple[str, ...] = Field(
        (),
        description="Broker users of the fleet's own processes (workers, API, CLI): the only senders of "
        "outcome events and retry headers trusted (empty: the user of RECALLS_AMQP_URL).",
    )
    max_clock_skew: float = Field(
        300,
        gt=0,
        le=86_400,
        description="Seconds a command's issued_at may lie in the future before it is dead-lettered.",
    )
    command_queue_max_length: int = Field(
        1_000_000,
        gt=0,
        description="Most messages a command queue holds; past it RabbitMQ refuses new publishes.",
    )
    api_max_body: int = Field(2_000_000, gt=0, description="Largest request body the batch API reads.")
    api_rate_limit: int = Field(10, gt=0, description="Batch submits per minute per API key.")
    api_max_open_batches: int = Field(5, gt=0, description="Batches per API key not yet complete.")
    api_metrics_host: str = Field("127.0.0.1", description="Where the batch API serves /metrics.")
    api_metrics_port: int | None = Field(
        None, gt=0, lt=65536, description="The batch API's /metrics port; unset: not served."
    )
    allowed_ports: tuple[int, ...] = Field(
        (), description="Ports besides 443 that a csvUrl or webhookUrl may name."
    )
    sandbox_host: str = Field("127.0.0.1", description="Where the DVSA sandbox listens.")
    sandbox_port: int = Field(8900, gt=0, lt=65536, description="The DVSA sandbox's port.")

    @field_validator("amqp_url")
    @classmethod
    def _broker_urls(cls, value: SecretStr) -> SecretStr:
        BrokerUrls.parse(value.get_secret_value())  # its errors name the entry and the reason, no value
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_redis_url(value.get_secret_value())  # its errors give the reason, no value
        return value

    @field_validator("dvsa_client_secret", "dvsa_api_key")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("dvsa_api_key")
    @classmethod
    def _api_key_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 10:
            raise ValueError("must be at least 10 characters (DVSA's API usage keys are)")
        return value

    @field_validator("dvsa_base_url", "dvsa_token_url")
    @classmethod
    def _https_unless_loopback(cls, value: AnyUrl | None) -> AnyUrl | None:
        if value is None or value.scheme == "https" or (value.scheme == "http" and _is_loopback(value.host)):
            return value
        raise ValueError("must use https:// (plain http:// only to a loopback address)")

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            absolute = parts.scheme in {"http", "https"} and bool(parts.hostname)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            absolute = False
        if not absolute:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = self._dvsa_problems()
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def _dvsa_problems(self) -> list[str]:
        if self.dvsa_base_url is None:
            if self.dvsa_token_url is None:
                return []
            return [f"RECALLS_DVSA_BASE_URL: must be set when RECALLS_DVSA_TOKEN_URL is set ({_NOT_DVSA})"]
        problems = []
        if self.dvsa_token_url is None:
            problems.append("RECALLS_DVSA_TOKEN_URL: must be set when RECALLS_DVSA_BASE_URL is set")
        if not _is_loopback(self.dvsa_base_url.host):  # a loopback base URL may be the sandbox itself
            problems.extend(
                f"{_variable(name)}: must be set to DVSA's credential when RECALLS_DVSA_BASE_URL is set "
                "(the default only works with the sandbox)"
                for name in _CREDENTIALS
                if not self._is_custom(name)
            )
        return problems

    def _is_custom(self, name: str) -> bool:
        return bool(getattr(self, name) != type(self).model_fields[name].default)

    def _check_sandbox_credentials(self) -> None:
        """Refuse to resolve the implicit sandbox as DVSA's address while a credential is not the sandbox's.

        Only the fleet resolves where DVSA is; the sandbox reads the same settings to learn which
        credentials to accept, so this is not checked when the settings are loaded.
        """
        problems = [
            f"RECALLS_DVSA_BASE_URL: must be set when {_variable(name)} is set ({_NOT_DVSA})"
            for name in _CREDENTIALS
            if self._is_custom(name)
        ]
        if problems:
            raise SettingsError(_invalid(problems))

    @property
    def uses_sandbox(self) -> bool:
        """True when no DVSA base URL is configured, so the fleet talks to the local sandbox."""
        return self.dvsa_base_url is None

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.sandbox_host}:{self.sandbox_port}"

    @property
    def effective_base_url(self) -> str:
        """The DVSA API base URL the fleet calls, without a trailing slash.

        Raises :class:`SettingsError` when that would be the implicit sandbox with credentials of one's own.
        """
        if self.dvsa_base_url is None:
            self._check_sandbox_credentials()
            return self.sandbox_url
        return str(self.dvsa_base_url).rstrip("/")

    @property
    def effective_token_url(self) -> str:
        """The token URL the fleet calls; raises like :attr:`effective_base_url`."""
        if self.dvsa_token_url is not None:
            return str(self.dvsa_token_url)
        self._check_sandbox_credentials()
        return f"{self.sandbox_url}{SANDBOX_TOKEN_PATH}"


def _variable(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


def _is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _invalid(lines: list[str]) -> str:
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _describe(error: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a rule across fields names its variable in the message itself
        return message
    location = "_".join(str(part) for part in error["loc"]).upper()
    return f"{ENV_PREFIX}{location}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; raise :class:`SettingsError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # include_input=False: the offending value may be a secret and must not be echoed.
        lines = [_describe(dict(err)) for err in exc.errors(include_input=False, include_url=False)]
        raise SettingsError(_invalid(lines)) from None
