"""Secrets and tokens never reach a log line, whatever carries them there; every line says whose it is."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from recalls.producers.batch_api.correlation import correlation_id
from recalls.shared import logs
from recalls.shared.logs import ConsoleFormatter, Correlator, JsonFormatter, Redactor
from recalls.shared.settings import Settings

SECRET = "client-secret-value-123"
API_KEY = "dvsa-api-key-value-456"
TOKEN = "eyJ0eXAiOiJKV1Qi.live-token.sig"
RUN_ID = re.compile(r"run-[0-9a-f]{12}")


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Correlator("run-test"))
    handler.addFilter(Redactor([SECRET]))
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, as it was before the test configured it."""
    logger = logging.getLogger()
    handlers, level = logger.handlers[:], logger.level
    quieted = {name: logging.getLogger(name).level for name in logs.NOISY}
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    for name, was in quieted.items():
        logging.getLogger(name).setLevel(was)


def configured(root: logging.Logger) -> io.StringIO:
    """``logs.configure`` with JSON lines, its handler writing to a buffer instead of stderr."""
    values: dict[str, Any] = {"dvsa_client_secret": SECRET, "dvsa_api_key": API_KEY}
    settings = Settings(**values)
    logs.configure(settings, json_lines=True)
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    return stream


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_secret_token_and_url_password_are_scrubbed(formatter: logging.Formatter) -> None:
    logger, stream = capture(formatter)
    logger.info("calling with %s", f"Authorization: Bearer {TOKEN}", extra={"detail": f"secret={SECRET}"})
    logger.warning("broker at amqp://user:hunter2@10.0.0.1:5672/ refused")
    logger.info("reply", extra={"body": {"nested": SECRET}})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        logger.exception("boom")
    text = stream.getvalue()
    for leaked in (SECRET, TOKEN, "hunter2"):
        assert leaked not in text
    assert "Bearer ***" in text
    assert "amqp://user:***@10.0.0.1" in text


@pytest.mark.parametrize(
    ("shape", "kept"),
    [
        (f'{{"access_token": "{TOKEN}", "expires_in": 3599}}', '"access_token": "***", "expires_in"'),
        (f"{{'access_token': '{TOKEN}'}}", "'access_token': '***'"),
        (f"grant_type=client_credentials&client_secret={TOKEN}&scope=x", "client_secret=***&scope=x"),
        (f"refresh_token={TOKEN}", "refresh_token=***"),
        (f'"GET /v1/recalls-batch/status?key={TOKEN}&batchId=b HTTP/1.1"', "status?key=***&batchId=b HTTP"),
        (f"https://h/cb?batchId=b&api_key={TOKEN}#top", "?batchId=b&api_key=***#top"),
        (f"redis://:{TOKEN}@redis:6379/0", "redis://:***@redis:6379/0"),
        (f"postgresql://app@db/recalls?sslmode=require&password={TOKEN}", "?sslmode=require&password=***"),
    ],
)
def test_token_fields_and_query_keys_are_scrubbed_in_any_shape(shape: str, kept: str) -> None:
    logger, stream = capture(JsonFormatter())
    logger.info("token endpoint said %s", shape)
    [entry] = entries(stream)
    assert TOKEN not in str(entry["msg"])
    assert kept in str(entry["msg"])


@pytest.mark.parametrize(
    ("secret", "kept"),
    [
        ("rk_0123abcd_Zx9-Qm_4vT2pL8sN0aB7cD1eF3gH5iJ6", "key rk_0123abcd_*** refused"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+6xJ1z5hZ0Y=", "key whsec_*** refused"),
    ],
)
def test_api_keys_and_webhook_secrets_are_scrubbed_by_their_shape(secret: str, kept: str) -> None:
    logger, stream = capture(JsonFormatter())
    logger.info("key %s refused", secret)
    [entry] = entries(stream)
    assert secret[-12:] not in str(entry["msg"])
    assert str(entry["msg"]) == kept


def test_json_lines_carry_the_extra_fields() -> None:
    logger, stream = capture(JsonFormatter())
    logger.info("create V applied", extra={"message_id": "m-1", "verb": "create", "status": 201})
    [entry] = entries(stream)
    assert (entry["msg"], entry["message_id"], entry["verb"], entry["status"]) == (
        "create V applied",
        "m-1",
        "create",
        201,
    )


def test_correlated_scopes_nest_and_restore_the_outer_id() -> None:
    logger, stream = capture(JsonFormatter())
    logger.info("before")
    with logs.correlated("outer"):
        logger.info("in outer")
        with logs.correlated("inner"):
            logger.info("in inner")
        with logs.correlated(None):
            logger.info("in a scope without an id")
        logger.info("back in outer")
    logger.info("after")
    assert [(e["msg"], e["correlation_id"]) for e in entries(stream)] == [
        ("before", "run-test"),
        ("in outer", "outer"),
        ("in inner", "inner"),
        ("in a scope without an id", "run-test"),
        ("back in outer", "outer"),
        ("after", "run-test"),
    ]


def test_an_explicit_correlation_id_is_kept_and_a_missing_one_filled_in() -> None:
    logger, stream = capture(JsonFormatter())
    with logs.correlated("scope"):
        logger.info("explicit", extra={"correlation_id": "from-the-command"})
        logger.info("none given", extra={"correlation_id": None})
    assert [e["correlation_id"] for e in entries(stream)] == ["from-the-command", "scope"]


async def test_concurrent_tasks_keep_their_own_ids() -> None:
    logger, stream = capture(JsonFormatter())
    first_started, second_started = asyncio.Event(), asyncio.Event()

    async def handle(name: str, mine: asyncio.Event, other: asyncio.Event) -> None:
        with logs.correlated(name):
            mine.set()
            await other.wait()  # both scopes are open at once from here
            logger.info(name)

    async def spawned_then_scope_closes() -> asyncio.Task[None]:
        with logs.correlated("parent"):
            child = asyncio.create_task(released.wait())
            task = asyncio.create_task(log_after(child))
        return task

    async def log_after(child: asyncio.Task[bool]) -> None:
        await child
        logger.info("child")

    released = asyncio.Event()
    late = await spawned_then_scope_closes()
    await asyncio.gather(
        handle("first", first_started, second_started), handle("second", second_started, first_started)
    )
    logger.info("caller")
    released.set()
    await late
    assert {(e["msg"], e["correlation_id"]) for e in entries(stream)} == {
        ("first", "first"),
        ("second", "second"),
        ("caller", "run-test"),
        ("child", "parent"),  # a task keeps the id it was created under
    }


def test_configure_makes_a_run_id_for_lines_outside_any_scope(root: logging.Logger) -> None:
    stream = configured(root)
    logging.getLogger("recalls.test").info("one")
    logging.getLogger("recalls.test").info("two")
    first = {e["correlation_id"] for e in entries(stream)}
    [run_id] = first
    assert RUN_ID.fullmatch(str(run_id))
    again = configured(root)  # a new process set-up is a new run
    logging.getLogger("recalls.test").info("three")
    [entry] = entries(again)
    assert RUN_ID.fullmatch(str(entry["correlation_id"])) and entry["correlation_id"] != run_id


def test_configured_secrets_and_live_tokens_are_scrubbed(root: logging.Logger) -> None:
    stream = configured(root)
    log = logging.getLogger("recalls.test")
    log.info("before: %s", TOKEN)
    logs.redact_also(TOKEN)
    log.info("secret %s key %s token %s", SECRET, API_KEY, TOKEN, extra={"detail": TOKEN})
    try:
        raise ValueError(f"DVSA rejected {TOKEN}")
    except ValueError:
        log.exception("call failed")
    before, *after = stream.getvalue().splitlines()
    assert TOKEN in before  # nothing scrubs an opaque token nobody named yet
    for line in after:
        for leaked in (SECRET, API_KEY, TOKEN):
            assert leaked not in line
    assert "secret *** key *** token ***" in after[0]


def test_live_tokens_are_bounded_to_the_newest(root: logging.Logger) -> None:
    stream = configured(root)
    tokens = [f"opaque-token-{n:02d}-{'x' * 20}" for n in range(logs.LIVE_VALUES_KEPT + 1)]
    for token in tokens:
        logs.redact_also(token)
    logs.redact_also(tokens[-1])  # adding one it holds already does not push an older one out
    logging.getLogger("recalls.test").info(" ".join(tokens))
    [entry] = entries(stream)
    assert str(entry["msg"]).split() == [tokens[0], *["***"] * logs.LIVE_VALUES_KEPT]


def test_console_lines_lead_with_the_correlation_id() -> None:
    logger, stream = capture(ConsoleFormatter())
    with logs.correlated("c-42"):
        logger.warning("create V retried", extra={"verb": "create", "attempt": 2})
    line = "create V retried correlation_id=c-42 verb=create attempt=2"
    assert stream.getvalue() == f"WARNING test.logs.{id(stream)}: {line}\n"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"req-123", True),
        (b"  with spaces inside  ", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"tab\there", False),
        ("caf\u00e9".encode(), False),
        (None, False),
    ],
)
def test_the_api_keeps_only_a_sane_correlation_id(sent: bytes | None, kept: bool) -> None:
    chosen = correlation_id(sent)
    if kept:
        assert sent is not None and chosen == sent.decode().strip()
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", chosen)
