"""The four DVSA calls, each rate limited, authenticated and reported as a plain :class:`DvsaReply`.

The client does not decide what a reply means for a command (that is the worker's job); it only makes
the call faithfully: a token from the cache, ``x-api-key``, one limiter slot per HTTP request (retries
count at DVSA too), one refresh-and-retry on 401.  The HTTP exchange itself is the transport's
(:mod:`recalls.shared.dvsa.transport`); its failures become :class:`DvsaTransportError` with ``maybe_sent``
telling whether DVSA could have applied the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from recalls.shared.contracts import Command, CreateCommand, DeleteCommand, FixCommand, GetCommand, Lane, Verb
from recalls.shared.dvsa.tokens import TokenSource
from recalls.shared.dvsa.transport import MAX_BODY_BYTES, RawReply, Transport, TransportFailure
from recalls.shared.metrics import WorkerMetrics
from recalls.shared.ratelimit import Permit, RateLimiter, Ready

_METHODS: dict[Verb, str] = {"create": "POST", "fix": "PUT", "delete": "DELETE", "get": "GET"}


@dataclass(frozen=True)
class DvsaReply:
    """DVSA's answer to one call."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    elapsed_ms: float = 0.0

    @property
    def error_code(self) -> str | None:
        code = self.body.get("errorCode")
        return str(code) if code is not None else None

    @property
    def error_message(self) -> str | None:
        message = self.body.get("errorMessage", self.body.get("message"))
        return str(message) if message is not None else None


class Withdrawn(Exception):
    """The caller's last look (``unless``) withdrew the call: nothing was sent."""


LastLook = Callable[[], Awaitable[bool]]
# A last look older than this when the call is let go is taken again: the gate or a pause held the call.
LOOK_FRESH_S = 0.01


class BudgetTaken(Exception):
    """A background call found no rate slot within its patience: live and bulk work took them all."""


# A background delivery waits unacked while it waits for a slot; RabbitMQ closes the consuming channel
# (every lane's deliveries with it) when one waits longer than its consumer timeout, 30 min by default.
BACKGROUND_PATIENCE_S = 300.0


class DvsaTransportError(Exception):
    """No HTTP answer.  ``maybe_sent``: the request may have reached DVSA and been applied."""

    def __init__(self, kind: str, *, maybe_sent: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.maybe_sent = maybe_sent


def _campaign_params(command: FixCommand | DeleteCommand | GetCommand) -> dict[str, str]:
    # DVSA takes one reference; the manufacturer's own is the one the manufacturer is sure of.
    if command.manufacturer_campaign_reference is not None:
        return {"manufacturerCampaignReference": command.manufacturer_campaign_reference}
    if command.dvsa_campaign_reference is not None:
        return {"dvsaCampaignReference": command.dvsa_campaign_reference}
    return {}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - time.time())


def _body(raw: RawReply) -> dict[str, Any]:
    if raw.cut:
        return {"message": f"an answer of more than {MAX_BODY_BYTES} bytes, not read"}
    if not raw.body:
        return {}
    try:
        body = msgspec.json.decode(raw.body)
    except msgspec.DecodeError:
        return {"message": raw.body[:500].decode(errors="replace")}
    return body if isinstance(body, dict) else {"message": str(body)[:500]}


class DvsaClient:
    """Calls DVSA for the fleet.  One per process; it shares the connection pool of ``transport``."""

    def __init__(
        self,
        transport: Transport,
        *,
        base_url: str,
        api_key: str,
        tokens: TokenSource,
        limiter: RateLimiter,
        metrics: WorkerMetrics | None = None,
        background_patience: float = BACKGROUND_PATIENCE_S,
    ) -> None:
        self._transport = transport
        self.metrics = metrics or WorkerMetrics()
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._tokens = tokens
        self._limiter = limiter
        self._background_patience = background_patience

    async def call(
        self, command: Command, lane: Lane = "live", *, unless: LastLook | None = None
    ) -> DvsaReply:
        """The DVSA call that carries out ``command``; a bulk or background call waits for earlier lanes.

        ``unless`` is asked once the call's slot has come, just before the limiter's gate lets it go
        (so its time is not the call's), and again just before sending if the gate held the call longer
        than :data:`LOOK_FRESH_S`: True withdraws it (:class:`Withdrawn`), so a decision that depends on
        the fleet's latest state is taken late.
        """
        if isinstance(command, CreateCommand):
            return await self.create(command, lane, unless=unless)
        if isinstance(command, FixCommand):
            return await self.fix(command, lane)
        if isinstance(command, DeleteCommand):
            return await self.delete(command, lane, unless=unless)
        return await self.get(command, lane)

    async def create(
        self, command: CreateCommand, lane: Lane = "live", *, unless: LastLook | None = None
    ) -> DvsaReply:
        body: dict[str, Any] = {
            "vin": command.vin,
            "manufacturerCampaignReference": command.manufacturer_campaign_reference,
            "recallCampaignStartDate": command.recall_campaign_start_date.isoformat(),
        }
        if command.dvsa_campaign_reference is not None:
            body["dvsaCampaignReference"] = command.dvsa_campaign_reference
        return await self._call("create", lane, "/recalls", json=body, unless=unless)

    async def fix(self, command: FixCommand, lane: Lane = "live") -> DvsaReply:
        body = {
            "rectificationDate": command.rectification_date.isoformat(),
            "repairStatus": command.repair_status,
        }
        path = f"/recalls/vin/{command.vin}"
        return await self._call("fix", lane, path, params=_campaign_params(command), json=body)

    async def delete(
        self, command: DeleteCommand, lane: Lane = "live", *, unless: LastLook | None = None
    ) -> DvsaReply:
        path = f"/recalls/vin/{command.vin}"
        return await self._call("delete", lane, path, params=_campaign_params(command), unless=unless)

    async def get(self, command: GetCommand, lane: Lane = "live") -> DvsaReply:
        path = f"/recalls/vin/{command.vin}"
        return await self._call("get", lane, path, params=_campaign_params(command))

    async def _call(
        self,
        verb: Verb,
        lane: Lane,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        unless: LastLook | None = None,
    ) -> DvsaReply:
        reply, token = await self._send(verb, lane, path, params, json, rejected=None, unless=unless)
        if reply.status == 401:
            reply, _ = await self._send(verb, lane, path, params, json, rejected=token)
        return reply

    async def _send(
        self,
        verb: Verb,
        lane: Lane,
        path: str,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        *,
        rejected: str | None,
        unless: LastLook | None = None,
    ) -> tuple[DvsaReply, str]:
        # A token in hand before the wait for a slot, so no fetch delays a call the limiter let go;
        # asked for again after it (a cached read), since the wait can outlast a short-lived token.
        token = await (self._tokens.refresh(rejected) if rejected else self._tokens.token())
        looked: list[float] = []  # when the last look was taken

        async def look() -> None:
            assert unless is not None
            if await unless():
                raise Withdrawn(verb)
            looked.append(time.monotonic())

        asked = time.perf_counter()
        # The last look is taken once the slot has come, before the gate: not part of the call's time.
        permit = await self._acquire(verb, lane, look if unless is not None else None)
        self.metrics.limiter_wait(verb, lane, time.perf_counter() - asked)
        token = await self._tokens.token()
        headers = {"Authorization": f"Bearer {token}", "x-api-key": self._api_key}
        try:
            if looked and time.monotonic() - looked[-1] > LOOK_FRESH_S:
                await look()  # the gate held the call after its look: look again, just before sending
            reply = await self._request(verb, path, params=params, json=json, headers=headers)
        finally:
            # Counted until a window after this: the request reached DVSA, if at all, before now.
            await self._limiter.answered(permit)
        if reply.status == 429:
            # Every caller of this verb must hold off, not only the one that was told.
            await self._limiter.pause(verb, reply.retry_after or 1.0)
        return reply, token

    async def _acquire(self, verb: Verb, lane: Lane, ready: Ready | None) -> Permit:
        """The limiter's leave; a background caller gives up after its patience (:class:`BudgetTaken`)."""
        if lane != "background":
            return await self._limiter.acquire(verb, lane, ready)
        try:
            async with asyncio.timeout(self._background_patience):
                return await self._limiter.acquire(verb, lane, ready)
        except TimeoutError:
            raise BudgetTaken(f"no {verb} slot left by live and bulk work") from None

    async def _request(
        self,
        verb: Verb,
        path: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> DvsaReply:
        started = time.perf_counter()
        try:
            raw = await self._transport.request(
                _METHODS[verb], self._base_url + path, params=params, json=json, headers=headers
            )
        except TransportFailure as exc:
            self.metrics.dvsa_call(verb, _snake(exc.kind), time.perf_counter() - started)
            raise DvsaTransportError(exc.kind, maybe_sent=exc.maybe_sent) from None
        elapsed = time.perf_counter() - started
        self.metrics.dvsa_call(verb, str(raw.status), elapsed)
        return DvsaReply(
            status=raw.status,
            body=_body(raw),
            retry_after=_retry_after(raw.retry_after),
            elapsed_ms=elapsed * 1000,
        )


def _snake(name: str) -> str:
    """'ReadTimeout' -> 'read_timeout': a transport failure as a metric label."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
