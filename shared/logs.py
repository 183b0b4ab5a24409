"""Logging set-up: one JSON object per line (or readable lines in a terminal), secrets scrubbed.

Every record passes through :class:`Redactor`, which replaces the configured secrets, the live tokens
handed to :func:`redact_also`, and anything that looks like a bearer or OAuth token or a key in a URL's
query, so a secret cannot reach a log even through an exception's text.  Every record also carries
``correlation_id``: the value of the innermost :func:`correlated` scope, else the run id that
:func:`configure` made for this process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from recalls.shared.settings import Settings

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# The user may be empty (redis://:password@host) but the password may not.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
# OAuth fields as JSON ("access_token": "v"), a Python repr ('access_token': 'v') or a form (access_token=v).
_TOKEN_FIELD = re.compile(
    r"""(?i)(?P<key>["']?\b(?:access_token|refresh_token|id_token|client_secret)["']?\s*[:=]\s*["']?)"""
    r"""[^"'\s,&;}]+"""
)
# Credentials in a URL's query (the batch API takes its key as ?key=), should a URL reach a line whole.
_QUERY_CREDENTIAL = re.compile(
    r"(?i)(?P<key>[?&](?:key|api_key|apikey|token|access_token|client_secret|code|password|sslpassword)=)"
    r"[^&#\s\"']+"
)
# The batch API's keys (their id stays: it names the key) and webhook secrets, wherever they appear.
_KEY_SHAPE = re.compile(r"\b(?P<key>rk_[0-9a-f]{8}_)[A-Za-z0-9_-]{32}|\bwhsec_[A-Za-z0-9+/=_-]{16,}")
# Every pattern above needs one of these in the text: most fields (a VIN, a verb) have none.
_SUSPECT = re.compile(r"(?i)bearer|token|secret|key=|code=|password=|://|rk_|whsec_")
REDACTED = "***"
CORRELATION_FIELD = "correlation_id"
LIVE_VALUES_KEPT = 8
NOISY = ("aio_pika", "aiormq", "httpx", "httpcore")  # libraries whose INFO lines drown the product's
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_correlation: ContextVar[str | None] = ContextVar("recalls_correlation_id", default=None)


def secrets_of(settings: Settings) -> list[str]:
    values = [
        settings.dvsa_client_secret.get_secret_value(),
        settings.dvsa_api_key.get_secret_value(),
    ]
    return [value for value in values if value]


@contextmanager
def correlated(value: str | None) -> Iterator[None]:
    """Within this scope (and the tasks it starts) every log record carries ``correlation_id=value``.

    ``None`` or an empty value falls back to the run id.  Nested scopes restore the outer value on exit.
    """
    token = _correlation.set(value or None)
    try:
        yield
    finally:
        _correlation.reset(token)


class Correlator(logging.Filter):
    """Stamps each record with the current correlation id, or the run id outside any scope."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, CORRELATION_FIELD, None):
            setattr(record, CORRELATION_FIELD, _correlation.get() or self.run_id)
        return True


class Redactor(logging.Filter):
    """Scrubs secrets from a record's message and extra fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._configured = frozenset(s for s in secrets if s)
        self._live: tuple[str, ...] = ()
        self._secrets = self._ordered()

    def add(self, value: str) -> None:
        """Scrub ``value`` too from now on; only the last few are kept, so a long run stays small."""
        if not value or value in self._configured or value in self._live:
            return
        self._live = (*self._live, value)[-LIVE_VALUES_KEPT:]
        # One assignment, so a record formatted on another thread sees the old list or the new one.
        self._secrets = self._ordered()

    def _ordered(self) -> list[str]:
        # Longest first, so a secret that contains another is replaced whole.
        return sorted(self._configured | set(self._live), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if _SUSPECT.search(text) is None:
            return text
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
        text = _TOKEN_FIELD.sub(rf"\g<key>{REDACTED}", text)
        text = _QUERY_CREDENTIAL.sub(rf"\g<key>{REDACTED}", text)
        text = _KEY_SHAPE.sub(lambda found: f"{found['key'] or 'whsec_'}{REDACTED}", text)
        return _URL_PASSWORD.sub(rf"\g<scheme>{REDACTED}@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD or isinstance(value, int | float | bool | None):
                continue
            # Anything else (a dict, an exception, ...) is logged as its scrubbed text.
            setattr(record, key, self.scrub(value if isinstance(value, str) else str(value)))
        return True


def redact_also(value: str) -> None:
    """Scrub ``value`` (a token fetched at run time) from every line logged from now on."""
    for handler in logging.getLogger().handlers:
        for installed in handler.filters:
            if isinstance(installed, Redactor):
                installed.add(value)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        # The correlation id leads the fields, where an eye scanning a terminal finds it.
        ordered = {CORRELATION_FIELD: extras.pop(CORRELATION_FIELD)} if CORRELATION_FIELD in extras else {}
        fields = " ".join(f"{k}={v}" for k, v in {**ordered, **extras}.items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def configure(settings: Settings, *, level: int = logging.INFO, json_lines: bool | None = None) -> None:
    """Send the product's logs to stderr: JSON unless stderr is a terminal, under a fresh run id."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler()
    # The correlator runs first so that an id taken from a request is scrubbed like any other field.
    handler.addFilter(Correlator(new_run_id()))
    handler.addFilter(Redactor(secrets_of(settings)))
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
