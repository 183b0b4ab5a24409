"""Logging set-up: one JSON object per line (or readable lines in a terminal), secrets scrubbed.

Every record passes through :class:`Redactor`, which replaces the configured secrets and anything that
looks like a bearer token, so a secret cannot reach a log even through an exception's text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from shared.settings import Settings

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")
REDACTED = "***"
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def secrets_of(settings: Settings) -> list[str]:
    values = [
        settings.dvsa_client_secret.get_secret_value(),
        settings.dvsa_api_key.get_secret_value(),
        settings.webhook_secret.get_secret_value() if settings.webhook_secret else "",
    ]
    return [value for value in values if value]


class Redactor(logging.Filter):
    """Scrubs secrets from a record's message and extra fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
        return _URL_PASSWORD.sub(rf"\g<scheme>{REDACTED}@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


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
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def configure(settings: Settings, *, level: int = logging.INFO, json_lines: bool | None = None) -> None:
    """Send the product's logs to stderr: JSON unless stderr is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler()
    handler.addFilter(Redactor(secrets_of(settings)))
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aio_pika", "aiormq", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
