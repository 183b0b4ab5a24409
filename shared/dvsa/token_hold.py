"""A token endpoint outage waited out in-process: DVSA calls hold for a token instead of failing.

Without it, every command that finds no token goes through a retry queue and comes back, again and
again for as long as the endpoint is down: broker traffic and log lines for nothing.  Held here, the
delivery stays unacked (nothing is lost) and the call goes on as soon as a token can be had.  The
endpoint itself is protected by :class:`recalls.shared.dvsa.tokens.TokenCache`'s quiet spells, so asking the
cache every ``retry_every`` seconds costs nothing while it is failing.  After ``patience`` seconds the
call gives up with :class:`TokenUnavailable`, and the command waits in a retry queue as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from recalls.shared.dvsa.tokens import TokenSource, TokenUnavailable
from recalls.shared.ratelimit import Clock, Sleep

log = logging.getLogger("recalls.tokens")


class TokenHold:
    """A :class:`TokenSource` that waits up to ``patience`` s for the one it wraps to have a token."""

    def __init__(
        self,
        source: TokenSource,
        *,
        patience: float,
        retry_every: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._source = source
        self._patience = patience
        self._retry_every = retry_every
        self._clock = clock
        self._sleep = sleep
        self.in_outage = False

    async def token(self) -> str:
        return await self._patiently(self._source.token)

    async def refresh(self, rejected: str) -> str:
        return await self._patiently(lambda: self._source.refresh(rejected))

    async def _patiently(self, get: Callable[[], Awaitable[str]]) -> str:
        deadline = self._clock() + self._patience
        while True:
            try:
                token = await get()
            except TokenUnavailable as exc:
                if not self.in_outage:
                    self.in_outage = True
                    log.error("no DVSA token: calls held up to %g s each (%s)", self._patience, exc)
                if self._clock() + self._retry_every > deadline:
                    raise
                await self._sleep(self._retry_every)  # the cache offers no event: it is asked again
                continue
            if self.in_outage:
                self.in_outage = False
                log.warning("DVSA token available again: calls resume")
            return token
