"""The webhook sender: tells a batch check's ``webhookUrl`` that the batch ended, signed, with retries.

The store writes a due call in the transaction that ends a batch; :class:`WebhookSender` takes due calls
(:meth:`Batches.due_webhooks` leases them, so two senders do not call twice), POSTs CarsXE's payload
signed with the webhook secret of the API key that submitted the batch, and settles each: delivered on a
2xx, else retried after :data:`BACKOFF` and given up after its last step, the last error kept.  The URL
is checked again at send time (the name may resolve elsewhere by now) and the request goes to the
address that was checked; redirects are failures, never followed.  A call that breaks in a way not
foreseen fails alone, recorded and retried like any other: the other calls of its round go out.

Signing follows the Standard Webhooks specification, so a receiver may check it with that
specification's libraries, or with :func:`verify_signature`: ``webhook-id`` is the batch id (a batch has
one call, and every retry of it carries the same id, so a receiver can drop repeats),
``webhook-timestamp`` the unix seconds of the attempt, ``webhook-signature`` ``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`` keyed with the bytes the key's ``whsec_`` secret encodes.  Each tenant's key
has its own secret, so no receiver can verify, or forge, another tenant's calls.

Neither a secret nor the URL (its query may hold the receiver's own token) reaches a log line or a
stored error: they name the batch, the key's id and the host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import msgspec

from recalls.shared.contracts import utc_now
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import WEBHOOK_SECRET_PREFIX, ApiKeys
from recalls.shared.store.batches import Batches, BatchStatus, WebhookDue
from recalls.shared.store.database import Database
from recalls.shared.url_safety import UnresolvedHost, UnsafeUrl, check_target, pinned_stream

log = logging.getLogger(__name__)

EVENT = "bulk_recall_batch_complete"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# The wait after each failed attempt; a call that fails once more after the last is given up.
BACKOFF = tuple(dt.timedelta(seconds=seconds) for seconds in (10, 60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600))
POLL_INTERVAL = 1.0
DUE_PER_ROUND = 50
_STAMP = re.compile(r"[0-9]{1,12}")  # unix seconds; a longer run of digits is no time, and slow to parse


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``webhook-signature`` entry: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``.

    ``secret``: ``whsec_`` and the key in base64 (the prefix may be left off).  Raises ``ValueError``
    (``binascii.Error``) when the rest is not base64.
    """
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: float = 300
) -> bool:
    """True if ``headers`` sign ``body`` with ``secret``, stamped at most ``tolerance`` s from ``now``.

    ``secret``: the ``whsec_`` webhook secret of the API key that submitted the batch (raises
    ``ValueError`` if it is not one); ``headers``: the call's, any case (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``); ``body``: exactly as received, before any JSON
    parsing; ``now``: unix seconds.  The timestamp bounds how long a captured call can be replayed.  The
    signature header is a space-separated list and any ``v1`` entry may match, so that a sender can sign
    with an old and a new secret while they are swapped.
    """
    named = {name.lower(): value for name, value in headers.items()}
    webhook_id, stamp = named.get(ID_HEADER, ""), named.get(TIMESTAMP_HEADER, "")
    if not webhook_id or not _STAMP.fullmatch(stamp) or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign(secret, webhook_id, int(stamp), body).encode()
    offered = named.get(SIGNATURE_HEADER, "").split()
    return any(hmac.compare_digest(expected, entry.encode()) for entry in offered)


class WebhookSender:
    """Delivers the webhook calls of ended batch checks; run :meth:`run` as a task, :meth:`wake` it early."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        http: httpx.AsyncClient,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._batches = Batches(db)
        self._keys = ApiKeys(db)
        self._settings = settings
        self._http = http
        self._clock = clock
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Look for due calls now rather than at the next poll (a batch has just ended)."""
        self._woken.set()

    async def run(self) -> None:
        """Deliver due calls until cancelled: every :data:`POLL_INTERVAL` seconds, or when woken."""
        while True:
            self._woken.clear()
            try:
                await self.deliver_due()
            except Exception:  # the store may be out of reach for a while: the next round tries again
                log.exception("webhook sender: could not take or settle due calls")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._woken.wait()

    async def deliver_due(self) -> int:
        """Make every call due now (at most :data:`DUE_PER_ROUND`), side by side; how many were made."""
        due = await self._batches.due_webhooks(self._clock(), DUE_PER_ROUND)
        async with asyncio.TaskGroup() as group:
            for call in due:
                group.create_task(self._deliver(call))
        return len(due)

    async def _deliver(self, call: WebhookDue) -> None:
        """Make the call and settle it; whatever breaks it (a stored URL, a key's secret) fails it alone."""
        try:
            error = await self._attempt(call)
        except Exception as exc:  # raised into the round's task group, it would cancel the other calls
            kind = type(exc)  # only the type: an unforeseen exception's text may quote the URL
            error = f"the call could not be made ({kind.__module__}.{kind.__qualname__})"
        now = self._clock()
        where = {"batch_id": call.batch_id, "host": _host(call.url), "attempt": call.attempts + 1}
        if error is None:
            await self._batches.webhook_delivered(call.batch_id, now)
            log.info("webhook delivered", extra=where)
            return
        retry_at = now + BACKOFF[call.attempts] if call.attempts < len(BACKOFF) else None
        await self._batches.webhook_failed(call.batch_id, error, retry_at)
        if retry_at is None:
            log.warning("webhook given up: %s", error, extra=where)
        else:
            log.warning("webhook failed, retried at %s: %s", retry_at.isoformat(), error, extra=where)

    async def _attempt(self, call: WebhookDue) -> str | None:
        """Make one call; None if the receiver took it, else why not (never quoting the URL)."""
        public_url = self._settings.public_url
        if public_url is None:
            return "RECALLS_PUBLIC_URL: not set, so the call has no downloadUrl"
        status = await self._batches.status(call.batch_id)
        if status is None:
            return "batch: no longer stored"
        if status.owner is None:
            return "batch: submitted without an API key, so no secret signs its call"
        secret = await self._keys.webhook_secret(status.owner)
        if secret is None:
            # A key made before keys had secrets: signing with one drawn now would sign calls its
            # receiver cannot check, so the call waits (retried) until the key's secret is rotated.
            return f"API key {status.owner}: has no webhook secret (rotate it to make one)"
        now = self._clock()
        body = msgspec.json.encode(self.payload(status, now, public_url))
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: call.batch_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, call.batch_id, timestamp, body),
            "User-Agent": "recalls-fleet-webhook",
        }
        return await self._post(call.url, headers, body)

    async def _post(self, url: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """POST ``body`` to ``url``, checked again now; None on a 2xx, else why not."""
        timeout = self._settings.webhook_timeout
        try:
            async with asyncio.timeout(timeout):
                target = await check_target(
                    url,
                    allow_private=self._settings.allow_private_urls,
                    allowed_ports=self._settings.allowed_ports,
                )
                async with pinned_stream(self._http, "POST", target, headers=headers, content=body) as answer:
                    code = answer.status_code  # the body is not read: the status is the receiver's answer
        except UnsafeUrl as exc:
            return f"webhookUrl: {exc.reason}"
        except UnresolvedHost as exc:
            return f"webhookUrl: {exc}"
        except (TimeoutError, httpx.TimeoutException):
            return f"webhookUrl: no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            return f"webhookUrl: the call failed ({type(exc).__name__}: {exc})"
        if 200 <= code < 300:
            return None
        if 300 <= code < 400:
            return f"webhookUrl: the receiver answered HTTP {code}, a redirect, which is not followed"
        return f"webhookUrl: the receiver answered HTTP {code}"

    @staticmethod
    def payload(status: BatchStatus, now: dt.datetime, public_url: str) -> dict[str, Any]:
        """The JSON body of the call about ``status``, made at ``now`` (CarsXE's fields and names).

        ``public_url``: the batch API's address as the receiver reaches it (RECALLS_PUBLIC_URL).
        """
        base = public_url.rstrip("/")
        # Unlike CarsXE's, the link holds no API key (only hashes of keys are stored): receivers add theirs.
        download = f"{base}/v1/recalls-batch/download?{urlencode({'batchId': status.id})}"
        processed = status.processed
        return {
            "event": EVENT,
            "batchId": status.id,
            "status": _api_status(status),
            "totalVins": status.total,
            "processedVins": processed,
            "hitCount": status.hits,
            "hitRate": round(status.hits / processed * 100, 2) if processed else 0,
            "downloadUrl": download,
            "timestamp": now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }


def _api_status(status: BatchStatus) -> str:
    """The batch's state as the API names it: a completed batch with a failed VIN is ``partial``."""
    if status.status == "completed":
        return "partial" if status.failed else "completed"
    return status.status  # failed (the other ending that owes a call) has the same name in the API


def _host(url: str) -> str | None:
    """The host to name in a log line instead of the URL, whose query may hold the receiver's token."""
    with contextlib.suppress(ValueError):  # a URL that does not parse fails its check, and is logged
        return urlsplit(url).hostname
    return None
