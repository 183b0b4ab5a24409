"""The webhook sender against a real receiver on loopback, with the store on SQLite and a clock of the test's.

The clock moves the retries along: a failed call becomes due again when the test says so, no sleeping.
Each batch belongs to an API key made in the store, whose own secret signs its call.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiohttp import web
from sqlalchemy import select, update

from recalls.shared.contracts import OutcomeEvent, Recall
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.batches import Admission, Batches
from recalls.shared.store.database import Database
from recalls.shared.store.tables import api_keys, webhook_deliveries
from recalls.workers.webhooks import BACKOFF, WebhookSender, sign, verify_signature
from tests.support.aiohttp_app import serving

pytestmark = pytest.mark.integration

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
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database.connect(store_settings(tmp_path)) as database:
        yield database


def store_settings(tmp_path: Path) -> Settings:
    values: dict[str, Any] = {
        "sqlite_path": tmp_path / "store" / "recalls.db",
        "allow_private_urls": True,
        "public_url": "https://recalls.example.com/",
    }
    return load_settings(**values)


@dataclass(frozen=True)
class Tenant:
    """An API key in the store: its id, which owns batches, and the webhook secret that signs their calls."""

    key_id: str
    secret: str


async def new_tenant(db: Database, name: str) -> Tenant:
    record, _ = await ApiKeys(db).create(name)
    secret = await ApiKeys(db).webhook_secret(record.id)
    assert secret is not None
    return Tenant(record.id, secret)


@dataclass
class Rig:
    """What each test sends with: the store and its settings, a client, the clock, a receiver, a tenant."""

    db: Database
    settings: Settings
    http: httpx.AsyncClient
    clock: Clock
    receiver: Receiver
    tenant: Tenant

    def sender(self, **overrides: Any) -> WebhookSender:
        """A sender with the rig's settings but ``overrides`` (e.g. ``allow_private_urls=False``)."""
        return WebhookSender(self.db, self.settings.model_copy(update=overrides), self.http, self.clock)

    async def ended_batch(
        self, owner: Tenant | None = None, *, url: str | None = None, failed_vin: bool = False
    ) -> str:
        """A batch check of two VINs from the cache (one with an open recall), and a failed third if asked.

        It is ``owner``'s (the rig's tenant's by default), and calls ``url`` (the receiver's by default).
        """
        batches = Batches(self.db, clock=self.clock)
        owner = owner or self.tenant
        cached = {"SALGA2EV5HA123456": [OPEN, FIXED], "WDD2050041R123456": []}
        batch_id = await batches.start_check(
            [*cached, "SAJAA1AE5GA123456"] if failed_vin else list(cached),
            cached,
            owner=owner.key_id,
            webhook_url=url or self.receiver.hook,
            lease=dt.timedelta(seconds=15),
            admission=Admission(window=dt.timedelta(minutes=1), check=lambda usage: None),
        )
        if failed_vin:  # published as the batch API publishes it, then answered with a failure
            [command] = await batches.unpublished_checks(batch_id, 10)
            await batches.published([command.message_id])
            await batches.close_publishing(batch_id, rejected=0, skipped=0)
            failed = OutcomeEvent(
                message_id=command.message_id,
                verb="get",
                vin=command.vin,
                result="failed",
                reason="dvsa_unavailable",
                attempts=8,
                first_seen_at=T0,
                completed_at=self.clock(),
            )
            await batches.record(failed)
        return batch_id

    async def delivery(self, batch_id: str) -> dict[str, Any]:
        """The batch's row of webhook_deliveries."""
        async with self.db.reading() as connection:
            query = select(webhook_deliveries).where(webhook_deliveries.c.batch_id == batch_id)
            return dict((await connection.execute(query)).one()._mapping)


@pytest.fixture
async def rig(tmp_path: Path, db: Database, receiver: Receiver) -> AsyncIterator[Rig]:
    async with httpx.AsyncClient() as http:
        yield Rig(db, store_settings(tmp_path), http, Clock(), receiver, await new_tenant(db, "tenant"))


# --- signing ---------------------------------------------------------------------------------------------


def standard_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature, worked out here from the specification, not by the sender's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_verify_signature_takes_the_real_one_and_nothing_else() -> None:
    secret, old = ("whsec_" + base64.b64encode(bytes([n]) * 32).decode() for n in (7, 8))
    body = b'{"event":"bulk_recall_batch_complete","batchId":"b1"}'
    now = T0.timestamp()
    stamp = int(now)
    signature = standard_signature(secret, "b1", stamp, body)
    assert sign(secret, "b1", stamp, body) == signature
    headers = {"webhook-id": "b1", "webhook-timestamp": str(stamp), "webhook-signature": signature}
    assert verify_signature(secret, headers, body, now)
    assert verify_signature(secret, {name.title(): value for name, value in headers.items()}, body, now)
    assert verify_signature(secret, headers, body, now + 300)
    assert not verify_signature(secret, headers, body.replace(b"b1", b"b2"), now)  # tampered body
    assert not verify_signature(old, headers, body, now)  # another key's secret
    assert not verify_signature(secret, headers, body, now + 301)  # too old: a replay
    assert not verify_signature(secret, headers, body, now - 301)  # from the future
    # an id or a timestamp changed (to pass as another call, or the age check) no longer matches
    assert not verify_signature(secret, {**headers, "webhook-id": "b2"}, body, now)
    assert not verify_signature(secret, {**headers, "webhook-timestamp": str(stamp + 1)}, body, now)
    for name in headers:
        assert not verify_signature(secret, {**headers, name: ""}, body, now)
    for stamp_text in ["soon", f"{stamp}.0", "\u0663", "9" * 5000]:
        assert not verify_signature(secret, {**headers, "webhook-timestamp": stamp_text}, body, now)
    for malformed in ["v1,abc", signature.removeprefix("v1,"), "garbage", "v1,\u00e9"]:
        assert not verify_signature(secret, {**headers, "webhook-signature": malformed}, body, now)
    # while a key's secret is swapped, a call may carry one signature per secret
    both = {**headers, "webhook-signature": f"{standard_signature(old, 'b1', stamp, body)} {signature}"}
    assert verify_signature(secret, both, body, now)
    assert verify_signature(old, both, body, now)


# --- delivering --------------------------------------------------------------------------------------------


async def test_a_delivered_call_is_signed_and_carries_carsxes_payload(rig: Rig) -> None:
    batch_id = await rig.ended_batch()
    rig.clock.advance(dt.timedelta(seconds=2))
    assert await rig.sender().deliver_due() == 1

    [(path, headers, body)] = rig.receiver.calls
    assert path == f"/hook?token={RECEIVER_TOKEN}"
    named = lowered(headers)
    assert named["content-type"] == "application/json"
    assert named["host"] == rig.receiver.url.removeprefix("http://")
    stamp = int(rig.clock().timestamp())
    assert (named["webhook-id"], named["webhook-timestamp"]) == (batch_id, str(stamp))
    assert named["webhook-signature"] == standard_signature(rig.tenant.secret, batch_id, stamp, body)
    assert verify_signature(rig.tenant.secret, headers, body, rig.clock().timestamp())
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
    row = await rig.delivery(batch_id)
    assert (row["delivered_at"], row["attempts"], row["last_error"]) == (rig.clock(), 1, None)
    rig.clock.advance(dt.timedelta(days=1))
    assert await rig.sender().deliver_due() == 0


async def test_a_batch_with_a_failed_vin_is_partial_and_a_failed_batch_failed(rig: Rig) -> None:
    partial = await rig.ended_batch(failed_vin=True)
    batches = Batches(rig.db, clock=rig.clock)
    failed = await batches.start("check", None, webhook_url=rig.receiver.hook, owner=rig.tenant.key_id)
    await batches.fail(failed, "csvUrl: could not be published")
    assert await rig.sender().deliver_due() == 2

    payloads = {
        body["batchId"]: body for body in (msgspec.json.decode(call[2]) for call in rig.receiver.calls)
    }
    assert payloads[partial]["status"] == "partial"
    assert (payloads[partial]["totalVins"], payloads[partial]["processedVins"]) == (3, 3)
    assert (payloads[partial]["hitCount"], payloads[partial]["hitRate"]) == (1, 33.33)
    assert payloads[failed]["status"] == "failed"
    assert (payloads[failed]["processedVins"], payloads[failed]["hitRate"]) == (0, 0)


async def test_a_failed_call_is_retried_after_its_backoff(rig: Rig) -> None:
    batch_id = await rig.ended_batch()
    sending = rig.sender()
    rig.receiver.answers = [500]
    assert await sending.deliver_due() == 1
    row = await rig.delivery(batch_id)
    assert row["last_error"] == "webhookUrl: the receiver answered HTTP 500"
    assert (row["attempts"], row["delivered_at"], row["next_attempt_at"]) == (1, None, T0 + BACKOFF[0])

    rig.clock.advance(BACKOFF[0] - dt.timedelta(seconds=1))
    assert await sending.deliver_due() == 0  # not due yet
    rig.clock.advance(dt.timedelta(seconds=1))
    assert await sending.deliver_due() == 1
    assert len(rig.receiver.calls) == 2
    row = await rig.delivery(batch_id)
    assert (row["attempts"], row["delivered_at"]) == (2, rig.clock())
    first, again = (lowered(headers) for _, headers, _ in rig.receiver.calls)
    assert first["webhook-id"] == again["webhook-id"] == batch_id  # a retry is the same delivery
    assert first["webhook-timestamp"] != again["webhook-timestamp"]  # signed when it is sent


async def test_a_redirect_is_a_failure_and_is_not_followed(rig: Rig) -> None:
    batch_id = await rig.ended_batch()
    rig.receiver.answers = [302]
    assert await rig.sender().deliver_due() == 1
    assert [call[0] for call in rig.receiver.calls] == [f"/hook?token={RECEIVER_TOKEN}"]  # never /elsewhere
    row = await rig.delivery(batch_id)
    assert (
        row["last_error"] == "webhookUrl: the receiver answered HTTP 302, a redirect, which is not followed"
    )
    assert (row["attempts"], row["delivered_at"]) == (1, None)


async def test_a_call_is_given_up_after_the_last_backoff_step(rig: Rig) -> None:
    batch_id = await rig.ended_batch()
    sending = rig.sender()
    rig.receiver.answers = [503] * (len(BACKOFF) + 1)
    for wait in BACKOFF:
        assert await sending.deliver_due() == 1
        assert (await rig.delivery(batch_id))["next_attempt_at"] == rig.clock() + wait
        rig.clock.advance(wait)
    assert await sending.deliver_due() == 1  # the last attempt
    row = await rig.delivery(batch_id)
    assert (row["gave_up"], row["attempts"], row["delivered_at"]) == (True, len(BACKOFF) + 1, None)
    assert row["last_error"] == "webhookUrl: the receiver answered HTTP 503"
    rig.clock.advance(dt.timedelta(days=30))
    assert await sending.deliver_due() == 0
    assert len(rig.receiver.calls) == len(BACKOFF) + 1


async def test_the_url_is_checked_again_when_the_call_is_made(rig: Rig) -> None:
    """A URL that passed when the batch was submitted may not pass now: then nothing is sent."""
    batch_id = await rig.ended_batch()
    assert await rig.sender(allow_private_urls=False).deliver_due() == 1
    assert rig.receiver.calls == []
    row = await rig.delivery(batch_id)
    assert (row["attempts"], row["last_error"]) == (1, "webhookUrl: must be an https URL")


async def test_a_receiver_that_does_not_answer_in_time(rig: Rig) -> None:
    batch_id = await rig.ended_batch()
    rig.receiver.hang = True
    assert await rig.sender(webhook_timeout=0.5).deliver_due() == 1
    row = await rig.delivery(batch_id)
    assert (row["attempts"], row["last_error"]) == (1, "webhookUrl: no answer within 0.5 s")


async def test_each_call_is_signed_with_its_own_keys_secret(rig: Rig) -> None:
    """Two tenants' calls in one round: each checks with its key's secret, and not with the other's."""
    other = await new_tenant(rig.db, "another tenant")
    assert other.secret != rig.tenant.secret
    mine = await rig.ended_batch()
    theirs = await rig.ended_batch(other)
    assert await rig.sender().deliver_due() == 2
    calls = {msgspec.json.decode(body)["batchId"]: (headers, body) for _, headers, body in rig.receiver.calls}
    now = rig.clock().timestamp()
    for batch_id, own, foreign in [(mine, rig.tenant, other), (theirs, other, rig.tenant)]:
        headers, body = calls[batch_id]
        assert verify_signature(own.secret, headers, body, now)
        assert not verify_signature(foreign.secret, headers, body, now)


async def test_a_call_without_a_keys_secret_waits_for_one(rig: Rig) -> None:
    """A key made before keys had secrets signs nothing until its secret is rotated; nor does no key."""
    key_id = rig.tenant.key_id
    async with rig.db.writing() as connection:
        await connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(webhook_secret=None))
    batch_id = await rig.ended_batch()
    ownerless = await Batches(rig.db, clock=rig.clock).start("check", None, webhook_url=rig.receiver.hook)
    await Batches(rig.db, clock=rig.clock).fail(ownerless, "csvUrl: could not be fetched")
    sending = rig.sender()
    assert await sending.deliver_due() == 2
    assert rig.receiver.calls == []
    row = await rig.delivery(batch_id)
    assert row["last_error"] == f"API key {key_id}: has no webhook secret (rotate it to make one)"
    assert row["next_attempt_at"] == rig.clock() + BACKOFF[0]
    unowned = (await rig.delivery(ownerless))["last_error"]
    assert unowned == "batch: submitted without an API key, so no secret signs its call"

    secret = await ApiKeys(rig.db).rotate_webhook_secret(key_id)
    assert secret is not None
    rig.clock.advance(BACKOFF[0])
    assert await sending.deliver_due() == 2
    [(_, headers, body)] = rig.receiver.calls
    assert verify_signature(secret, headers, body, rig.clock().timestamp())


async def test_a_call_that_breaks_fails_alone_and_the_round_goes_on(rig: Rig) -> None:
    """A URL stored before hosts were checked whole, and a key whose stored secret is not base64, each fail
    their own call, retried on the backoff and then given up; another tenant's call in the same round
    goes out.
    """
    bad_url = await rig.ended_batch(url="https://a..example.com/hook")
    broken = await new_tenant(rig.db, "broken secret")
    async with rig.db.writing() as connection:
        corrupt = update(api_keys).where(api_keys.c.id == broken.key_id).values(webhook_secret="whsec_!?")
        await connection.execute(corrupt)
    bad_secret = await rig.ended_batch(broken)
    other = await new_tenant(rig.db, "another tenant")
    good = await rig.ended_batch(other)
    sending = rig.sender()

    assert await sending.deliver_due() == 3
    [(_, headers, body)] = rig.receiver.calls
    assert msgspec.json.decode(body)["batchId"] == good
    assert verify_signature(other.secret, headers, body, rig.clock().timestamp())
    assert (await rig.delivery(good))["delivered_at"] == rig.clock()
    errors = {
        bad_url: "webhookUrl: host: has an empty label (two dots in a row, or a dot at the start)",
        bad_secret: "the call could not be made (binascii.Error)",
    }
    for batch_id, error in errors.items():
        row = await rig.delivery(batch_id)
        assert (row["last_error"], row["next_attempt_at"]) == (error, rig.clock() + BACKOFF[0])
    for wait in BACKOFF:
        rig.clock.advance(wait)
        assert await sending.deliver_due() == 2
    for batch_id in errors:
        row = await rig.delivery(batch_id)
        assert (row["gave_up"], row["attempts"]) == (True, len(BACKOFF) + 1)
    rig.clock.advance(dt.timedelta(days=30))
    assert await sending.deliver_due() == 0
    assert len(rig.receiver.calls) == 1


async def test_the_running_sender_delivers_when_woken(rig: Rig) -> None:
    sending = rig.sender()
    task = asyncio.create_task(sending.run())
    try:
        await rig.ended_batch()
        sending.wake()
        async with asyncio.timeout(30):
            await rig.receiver.called.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(rig.receiver.calls) == 1


async def test_neither_the_secret_nor_the_url_reaches_a_log_or_a_stored_error(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    batch_id = await rig.ended_batch()
    sending = rig.sender()
    rig.receiver.answers = [500]
    assert await sending.deliver_due() == 1
    failure = (await rig.delivery(batch_id))["last_error"]
    rig.clock.advance(BACKOFF[0])
    assert await sending.deliver_due() == 1
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name == "recalls.workers.webhooks"
    )
    assert "webhook failed" in logged
    assert "webhook delivered" in logged
    for secret in (rig.tenant.secret, RECEIVER_TOKEN):
        assert secret not in logged
        assert secret not in failure
