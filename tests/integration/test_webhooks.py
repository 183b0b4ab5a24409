"""The webhook sender against a real receiver on loopback, with the store on SQLite and a clock of the test's.

The clock moves the retries along: a failed call becomes due again when the test says so, no sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiohttp import web
from sqlalchemy import select

from shared.contracts import GetCommand, OutcomeEvent, Recall
from shared.settings import Settings, load_settings
from shared.store.batches import Batches
from shared.store.database import Database
from shared.store.tables import webhook_deliveries
from tests.support.aiohttp_app import serving
from workers.webhooks import BACKOFF, SIGNATURE_HEADER, WebhookSender, sign, verify_signature

pytestmark = pytest.mark.integration

SECRET = "whsec-it-0123456789abcdef0123456789abcdef"
RECEIVER_TOKEN = "receiver-token-5150"  # the receiver's own key in its URL: never logged
T0 = dt.datetime(2026, 3, 24, 10, 16, 43, tzinfo=dt.UTC)
OPEN = Recall(manufacturer_campaign_reference="RC-1", repair_status="NOT_FIXED")
FIXED = Recall(manufacturer_campaign_reference="RC-2", repair_status="FIXED")


class Clock:
    """The time of the store and the sender, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, by: dt.timedelta) -> None:
        self.now += by


@dataclass
class Receiver:
    """A webhook receiver: records each call and answers with the statuses queued (then 200)."""

    url: str = ""
    calls: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    hang: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.path_qs, dict(request.headers), await request.read()))
        self.called.set()
        if self.hang:
            await self.released.wait()
        status = self.answers.pop(0) if self.answers else 200
        headers = {"Location": f"{self.url}/elsewhere"} if 300 <= status < 400 else {}
        return web.Response(status=status, text="ok", headers=headers)

    @property
    def hook(self) -> str:
        return f"{self.url}/hook?token={RECEIVER_TOKEN}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiving = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiving.handle)
    app.router.add_post("/elsewhere", receiving.handle)
    async with serving(app) as url:
        receiving.url = url
        try:
            yield receiving
        finally:
            receiving.released.set()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return store_settings(tmp_path)


def store_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sqlite_path": tmp_path / "store" / "recalls.db",
        "allow_private_urls": True,
        "webhook_secret": SECRET,
        "public_url": "https://recalls.example.com/",
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database.connect(settings) as database:
        yield database


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def sender(db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock) -> WebhookSender:
    return WebhookSender(db, settings, http, clock)


async def ended_batch(db: Database, clock: Clock, url: str, *, failed_vin: bool = False) -> str:
    """A batch check of two VINs from the cache (one with an open recall), and a failed third if asked."""
    batches = Batches(db, clock=clock)
    batch_id = await batches.start("check", None, webhook_url=url)
    await batches.add_cached(batch_id, {"SALGA2EV5HA123456": [OPEN, FIXED], "WDD2050041R123456": []}, T0)
    if failed_vin:
        command = GetCommand(vin="SAJAA1AE5GA123456", correlation_id=batch_id)
        await batches.claim(batch_id, [command])
        await batches.published([command.message_id])
    await batches.close_publishing(batch_id, rejected=0, skipped=0)
    if failed_vin:
        failed = OutcomeEvent(
            message_id=command.message_id,
            verb="get",
            vin=command.vin,
            result="failed",
            reason="dvsa_unavailable",
            attempts=8,
            first_seen_at=T0,
            completed_at=clock(),
        )
        await batches.record(failed)
    return batch_id


async def delivery(db: Database, batch_id: str) -> dict[str, Any]:
    async with db.reading() as connection:
        query = select(webhook_deliveries).where(webhook_deliveries.c.batch_id == batch_id)
        return dict((await connection.execute(query)).one()._mapping)


# --- signing ---------------------------------------------------------------------------------------------


def test_verify_signature_takes_the_real_one_and_nothing_else() -> None:
    body = b'{"event":"bulk_recall_batch_complete","batchId":"b1"}'
    now = T0.timestamp()
    header = sign(SECRET, int(now), body)
    assert verify_signature(SECRET, header, body, now)
    assert verify_signature(SECRET, header, body, now + 300)
    assert not verify_signature(SECRET, header, body.replace(b"b1", b"b2"), now)  # tampered body
    assert not verify_signature("another-secret-0123456789", header, body, now)  # wrong secret
    assert not verify_signature(SECRET, header, body, now + 301)  # too old: a replay
    assert not verify_signature(SECRET, header, body, now - 301)  # from the future
    # a timestamp changed to pass the age check no longer matches the signature
    stale = sign(SECRET, int(now) - 3600, body)
    assert not verify_signature(SECRET, stale.replace(f"t={int(now) - 3600}", f"t={int(now)}"), body, now)
    for malformed in ["", "v1=abc", f"t={int(now)}", f"t=soon,{header.split(',')[1]}", "garbage"]:
        assert not verify_signature(SECRET, malformed, body, now)
    # during a swap of secrets, the call may carry one signature per secret
    both = f"{header},v1={sign('the-old-secret-0123456789', int(now), body).rpartition('=')[2]}"
    assert verify_signature(SECRET, both, body, now)
    assert verify_signature("the-old-secret-0123456789", both, body, now)


# --- delivering --------------------------------------------------------------------------------------------


async def test_a_delivered_call_is_signed_and_carries_carsxes_payload(
    db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    batch_id = await ended_batch(db, clock, receiver.hook)
    clock.advance(dt.timedelta(seconds=2))
    assert await sender(db, settings, http, clock).deliver_due() == 1

    [(path, headers, body)] = receiver.calls
    assert path == f"/hook?token={RECEIVER_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == receiver.url.removeprefix("http://")
    assert verify_signature(SECRET, headers[SIGNATURE_HEADER], body, clock().timestamp())
    assert msgspec.json.decode(body) == {
        "event": "bulk_recall_batch_complete",
        "batchId": batch_id,
        "status": "completed",
        "totalVins": 2,
        "processedVins": 2,
        "hitCount": 1,
        "hitRate": 50.0,
        "downloadUrl": f"https://recalls.example.com/v1/recalls-batch/download?batchId={batch_id}",
        "timestamp": "2026-03-24T10:16:45.000Z",
    }
    row = await delivery(db, batch_id)
    assert (row["delivered_at"], row["attempts"], row["last_error"]) == (clock(), 1, None)
    clock.advance(dt.timedelta(days=1))
    assert await sender(db, settings, http, clock).deliver_due() == 0


async def test_a_batch_with_a_failed_vin_is_partial_and_a_failed_batch_failed(
    db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    partial = await ended_batch(db, clock, receiver.hook, failed_vin=True)
    batches = Batches(db, clock=clock)
    failed = await batches.start("check", None, webhook_url=receiver.hook)
    await batches.fail(failed, "csvUrl: could not be published")
    assert await sender(db, settings, http, clock).deliver_due() == 2

    payloads = {body["batchId"]: body for body in (msgspec.json.decode(call[2]) for call in receiver.calls)}
    assert payloads[partial]["status"] == "partial"
    assert (payloads[partial]["totalVins"], payloads[partial]["processedVins"]) == (3, 3)
    assert (payloads[partial]["hitCount"], payloads[partial]["hitRate"]) == (1, 33.33)
    assert payloads[failed]["status"] == "failed"
    assert (payloads[failed]["processedVins"], payloads[failed]["hitRate"]) == (0, 0)


async def test_a_failed_call_is_retried_after_its_backoff(
    db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    batch_id = await ended_batch(db, clock, receiver.hook)
    sending = sender(db, settings, http, clock)
    receiver.answers = [500]
    assert await sending.deliver_due() == 1
    row = await delivery(db, batch_id)
    assert row["last_error"] == "webhookUrl: the receiver answered HTTP 500"
    assert (row["attempts"], row["delivered_at"], row["next_attempt_at"]) == (1, None, T0 + BACKOFF[0])

    clock.advance(BACKOFF[0] - dt.timedelta(seconds=1))
    assert await sending.deliver_due() == 0  # not due yet
    clock.advance(dt.timedelta(seconds=1))
    assert await sending.deliver_due() == 1
    assert len(receiver.calls) == 2
    row = await delivery(db, batch_id)
    assert (row["attempts"], row["delivered_at"]) == (2, clock())


async def test_a_redirect_is_a_failure_and_is_not_followed(
    db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    batch_id = await ended_batch(db, clock, receiver.hook)
    receiver.answers = [302]
    assert await sender(db, settings, http, clock).deliver_due() == 1
    assert [call[0] for call in receiver.calls] == [f"/hook?token={RECEIVER_TOKEN}"]  # never /elsewhere
    row = await delivery(db, batch_id)
    assert (
        row["last_error"] == "webhookUrl: the receiver answered HTTP 302, a redirect, which is not followed"
    )
    assert (row["attempts"], row["delivered_at"]) == (1, None)


async def test_a_call_is_given_up_after_the_last_backoff_step(
    db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    batch_id = await ended_batch(db, clock, receiver.hook)
    sending = sender(db, settings, http, clock)
    receiver.answers = [503] * (len(BACKOFF) + 1)
    for wait in BACKOFF:
        assert await sending.deliver_due() == 1
        assert (await delivery(db, batch_id))["next_attempt_at"] == clock() + wait
        clock.advance(wait)
    assert await sending.deliver_due() == 1  # the last attempt
    row = await delivery(db, batch_id)
    assert (row["gave_up"], row["attempts"], row["delivered_at"]) == (True, len(BACKOFF) + 1, None)
    assert row["last_error"] == "webhookUrl: the receiver answered HTTP 503"
    clock.advance(dt.timedelta(days=30))
    assert await sending.deliver_due() == 0
    assert len(receiver.calls) == len(BACKOFF) + 1


async def test_the_url_is_checked_again_when_the_call_is_made(
    db: Database, tmp_path: Path, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    """A URL that passed when the batch was submitted may not pass now: then nothing is sent."""
    batch_id = await ended_batch(db, clock, receiver.hook)
    strict = store_settings(tmp_path, allow_private_urls=False)
    assert await sender(db, strict, http, clock).deliver_due() == 1
    assert receiver.calls == []
    row = await delivery(db, batch_id)
    assert (row["attempts"], row["last_error"]) == (1, "webhookUrl: must be an https URL")


async def test_a_receiver_that_does_not_answer_in_time(
    db: Database, tmp_path: Path, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    batch_id = await ended_batch(db, clock, receiver.hook)
    receiver.hang = True
    impatient = store_settings(tmp_path, webhook_timeout=0.5)
    assert await sender(db, impatient, http, clock).deliver_due() == 1
    row = await delivery(db, batch_id)
    assert (row["attempts"], row["last_error"]) == (1, "webhookUrl: no answer within 0.5 s")


async def test_without_a_secret_nothing_is_sent(
    db: Database, tmp_path: Path, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    batch_id = await ended_batch(db, clock, receiver.hook)
    unsigned = store_settings(tmp_path, webhook_secret=None)
    assert await sender(db, unsigned, http, clock).deliver_due() == 1
    assert receiver.calls == []
    assert (await delivery(db, batch_id))["last_error"].startswith("RECALLS_WEBHOOK_SECRET: not set")


async def test_the_running_sender_delivers_when_woken(
    db: Database, settings: Settings, http: httpx.AsyncClient, clock: Clock, receiver: Receiver
) -> None:
    sending = sender(db, settings, http, clock)
    task = asyncio.create_task(sending.run())
    try:
        await ended_batch(db, clock, receiver.hook)
        sending.wake()
        async with asyncio.timeout(30):
            await receiver.called.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(receiver.calls) == 1


async def test_neither_the_secret_nor_the_url_reaches_a_log_or_a_stored_error(
    db: Database,
    settings: Settings,
    http: httpx.AsyncClient,
    clock: Clock,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    batch_id = await ended_batch(db, clock, receiver.hook)
    sending = sender(db, settings, http, clock)
    receiver.answers = [500]
    assert await sending.deliver_due() == 1
    failure = (await delivery(db, batch_id))["last_error"]
    clock.advance(BACKOFF[0])
    assert await sending.deliver_due() == 1
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name == "workers.webhooks"
    )
    assert "webhook failed" in logged
    assert "webhook delivered" in logged
    for secret in (SECRET, RECEIVER_TOKEN):
        assert secret not in logged
        assert secret not in failure
