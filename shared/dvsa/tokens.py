"""The OAuth2 client-credentials token every DVSA call carries, cached and refreshed by one caller.

DVSA asks clients to cache the token; a fleet that fetched one per call would meet rate limits at the
token endpoint.  :class:`TokenCache` keeps one token per process, refreshes it ahead of expiry under a
lock (single flight: concurrent callers wait for the one refresh), and lets a caller that met a 401
force one refresh.  Credentials go in the form body (client_secret_post), as DVSA's Azure AD expects.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from dataclasses import dataclass
from typing import Protocol

import httpx

with warnings.catch_warnings(record=True):
    # authlib 1.9 warns on import that it prefers an httpx fork (and forces its warnings to show);
    # httpx is what this project uses, so the warning is recorded here and dropped.
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from recalls.shared import logs
from recalls.shared.metrics import WorkerMetrics
from recalls.shared.ratelimit import Clock
from recalls.shared.settings import Settings

MAX_QUIET = 30.0  # s: the longest the endpoint is left alone after failures


class TokenUnavailable(Exception):
    """No token could be had; the message names the cause but never a credential."""


class TokenSource(Protocol):
    async def token(self) -> str:
        """A token valid for a while yet."""

    async def refresh(self, rejected: str) -> str:
        """A token other than ``rejected``, which DVSA answered with 401."""


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    refresh_at: float  # ahead of expiry, so no call leaves with a token about to lapse


def note_token(metrics: WorkerMetrics | None, token: Token) -> None:
    """The process uses ``token`` from now on: its logs scrub it, its figures show its expiry."""
    logs.redact_also(token.value)
    if metrics is not None:
        metrics.token_expires_at = token.expires_at


def new_token(value: str, now: float, expires_in: float) -> Token:
    ahead = min(60.0, expires_in * 0.1)
    return Token(value, now + expires_in, now + expires_in - ahead)


class TokenCache:
    """One client-credentials token for this process."""

    def __init__(
        self, settings: Settings, *, clock: Clock = time.time, metrics: WorkerMetrics | None = None
    ) -> None:
        self._url = settings.effective_token_url
        self._oauth = AsyncOAuth2Client(
            client_id=settings.dvsa_client_id,
            client_secret=settings.dvsa_client_secret.get_secret_value(),
            scope=settings.dvsa_scope,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name)
            timeout=settings.dvsa_timeout,
        )
        self._clock = clock
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._failures = 0
        self._quiet_until = 0.0
        self._last_failure = ""
        self._current: Token | None = None

    def _fresh(self, token: Token | None) -> bool:
        return token is not None and self._clock() < token.refresh_at

    async def token(self) -> str:
        current = self._current
        if current is not None and self._fresh(current):
            return current.value
        async with self._lock:
            if self._current is None or not self._fresh(self._current):
                self._current = await self.fetch()
            return self._current.value

    async def refresh(self, rejected: str) -> str:
        async with self._lock:
            if self._current is None or self._current.value == rejected:
                self._current = await self.fetch()
            return self._current.value

    async def fetch(self) -> Token:
        """A new token from the token endpoint, whatever is cached.

        After a failure the endpoint is left alone for a while (1 s, doubling to 30 s): every command
        that finds no token fails at once meanwhile, rather than each asking an endpoint that is down.
        """
        if self._clock() < self._quiet_until:
            raise TokenUnavailable(f"token endpoint failing ({self._last_failure}); not asked again yet")
        try:
            token = await self._request()
        except TokenUnavailable as exc:
            self._failures += 1
            self._last_failure = str(exc)
            self._quiet_until = self._clock() + min(MAX_QUIET, 2.0 ** (self._failures - 1))
            raise
        self._failures = 0
        if self._metrics is not None:
            self._metrics.token_fetched()
        note_token(self._metrics, token)
        return token

    async def _request(self) -> Token:
        try:
            reply = await self._oauth.fetch_token(self._url, grant_type="client_credentials")
        except OAuthError as exc:
            raise TokenUnavailable(f"token endpoint refused: {exc.error}") from None
        except httpx.HTTPError as exc:
            raise TokenUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
        except ValueError as exc:  # authlib raises this for a body that is not a token
            raise TokenUnavailable(f"token endpoint answered: {type(exc).__name__}") from None
        return new_token(str(reply["access_token"]), self._clock(), float(reply.get("expires_in", 0)))

    async def aclose(self) -> None:
        await self._oauth.aclose()
