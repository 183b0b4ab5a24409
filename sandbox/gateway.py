"""What stands in front of every DVSA API call: rate limit, latency, authentication and injected faults.

The order, which tests rely on:

1. **Arrival.**  The time is read once, when the handler first sees the request, and the verb's rate limit
   is decided on it (a 429 storm refuses everything).  Like an API gateway, the limiter counts a request
   before knowing whether it is authenticated, so a client sending bad tokens still spends its budget.
2. **Latency** is added to every call, refused or not, without blocking other calls.
3. **429** for a request the limiter (or a storm) refused, with ``Retry-After``.
4. **401** ``RECALLS-UA-01`` for a missing, unknown or expired bearer token, then **403** ``RECALLS-FB-01``
   for a wrong ``x-api-key`` (DVSA checks in that order).
5. **Faults:** a dropped connection, or a 500/503, before anything changes; or a timeout, where the change
   *is* applied and the answer withheld for ``hang_seconds`` (the client's worst case).
6. The endpoint itself.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from recalls.sandbox.faults import Fault
from recalls.sandbox.journal import JournalEntry
from recalls.sandbox.ratelimit import Admission
from recalls.sandbox.responses import dvsa_error, gateway_error
from recalls.sandbox.sandbox import Sandbox
from recalls.sandbox.verbs import Verb

Handler = Callable[[web.Request], Awaitable[web.Response]]

_ERROR_STATUS = {Fault.ERROR_500: 500, Fault.ERROR_503: 503}


class Gateway:
    """Wraps endpoint handlers in the steps listed in the module docstring."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._api_key = sandbox.config.api_key.encode()

    def wrap(self, verb: Verb, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            return await self._handle(verb, handler, request)

        return guarded

    async def _handle(self, verb: Verb, handler: Handler, request: web.Request) -> web.Response:
        arrival = time.monotonic()  # first thing: the limiter must judge the arrival, not the answer
        epoch = time.time()
        sandbox = self._sandbox
        admission, storm = self._admit(verb, arrival)
        sandbox.stats.verbs[verb].arrived(arrival, admission.in_window)
        latency = sandbox.faults.latency_seconds
        if latency:
            await asyncio.sleep(latency)
        if not admission.admitted:
            response = gateway_error(429, admission.retry_after)
            return self._answered(verb, request, epoch, response, "storm" if storm else None)
        refusal = self._refuse_credentials(request, arrival)
        if refusal is not None:
            return self._answered(verb, request, epoch, refusal, None)
        fault = sandbox.faults.roll()
        if fault is Fault.DROP:
            return self._drop(verb, request, epoch)
        if fault in _ERROR_STATUS:
            response = gateway_error(_ERROR_STATUS[fault])
            return self._answered(verb, request, epoch, response, fault.value)
        response = await handler(request)
        if fault is Fault.TIMEOUT:
            # Recorded now, when the change has been applied: the journal shows what DVSA did even though
            # the client, having timed out, never hears about it.
            self._answered(verb, request, epoch, response, fault.value)
            await asyncio.sleep(sandbox.faults.hang_seconds)
            return response
        return self._answered(verb, request, epoch, response, None)

    def _admit(self, verb: Verb, arrival: float) -> tuple[Admission, bool]:
        limiter = self._sandbox.limiters[verb]
        storm = self._sandbox.faults.storm_remaining(arrival)
        if storm > 0:
            in_window = limiter.in_window(arrival)
            return Admission(admitted=False, in_window=in_window, retry_after=math.ceil(storm)), True
        return limiter.admit(arrival), False

    def _refuse_credentials(self, request: web.Request, now: float) -> web.Response | None:
        if not self._sandbox.tokens.accepts(request.headers.get("Authorization"), now):
            return dvsa_error(401, "Missing, invalid or expired bearer token")
        key = request.headers.get("x-api-key", "").encode()
        if not hmac.compare_digest(key, self._api_key):
            return dvsa_error(403, "Missing or unrecognised API usage key (x-api-key)")
        return None

    def _drop(self, verb: Verb, request: web.Request, epoch: float) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.close()
        self._record(verb, request, epoch, None, Fault.DROP.value)
        # aiohttp cannot write this to a closing transport and gives up quietly: the client sees the
        # connection end with no response at all.
        return web.Response(status=500)

    def _answered(
        self, verb: Verb, request: web.Request, epoch: float, response: web.Response, fault: str | None
    ) -> web.Response:
        self._record(verb, request, epoch, response.status, fault)
        return response

    def _record(
        self, verb: Verb, request: web.Request, epoch: float, status: int | None, fault: str | None
    ) -> None:
        sandbox = self._sandbox
        sandbox.stats.verbs[verb].answered(status)
        sandbox.journal.record(
            JournalEntry(
                verb=verb.value,
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=status,
                fault=fault,
                arrival=epoch,
            )
        )
