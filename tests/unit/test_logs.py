"""Secrets and tokens never reach a log line, whatever carries them there."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.logs import ConsoleFormatter, JsonFormatter, Redactor

SECRET = "client-secret-value-123"
TOKEN = "eyJ0eXAiOiJKV1Qi.live-token.sig"


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor([SECRET]))
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_secret_token_and_url_password_are_scrubbed(formatter: logging.Formatter) -> None:
    logger, stream = capture(formatter)
    logger.info("calling with %s", f"Authorization: Bearer {TOKEN}", extra={"detail": f"secret={SECRET}"})
    logger.warning("broker at amqp://user:hunter2@10.0.0.1:5672/ refused")
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        logger.exception("boom")
    text = stream.getvalue()
    for leaked in (SECRET, TOKEN, "hunter2"):
        assert leaked not in text
    assert "Bearer ***" in text
    assert "amqp://user:***@10.0.0.1" in text


def test_json_lines_carry_the_extra_fields() -> None:
    logger, stream = capture(JsonFormatter())
    logger.info("create V applied", extra={"message_id": "m-1", "verb": "create", "status": 201})
    entry = json.loads(stream.getvalue())
    assert (entry["msg"], entry["message_id"], entry["verb"], entry["status"]) == (
        "create V applied",
        "m-1",
        "create",
        201,
    )
