"""Bearer tokens the sandbox has issued: random opaque strings that expire after a fixed lifetime."""

from __future__ import annotations

import secrets

_BEARER_PREFIX = "bearer "


class TokenStore:
    """Issues tokens and checks them.  Times are ``time.monotonic()`` readings passed in by the caller."""

    __slots__ = ("_expiry", "_next_purge", "_ttl")

    def __init__(self, ttl: int) -> None:
        self._ttl = ttl
        self._expiry: dict[str, float] = {}
        self._next_purge = 1024  # purge expired tokens when the store grows past this

    @property
    def ttl(self) -> int:
        return self._ttl

    def issue(self, now: float) -> str:
        """A fresh token valid for ``ttl`` seconds from ``now``."""
        if len(self._expiry) >= self._next_purge:
            self._purge(now)
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self._ttl
        return token

    def accepts(self, authorization: str | None, now: float) -> bool:
        """True if the ``Authorization`` header carries a bearer token we issued that has not expired."""
        if authorization is None or authorization[:7].lower() != _BEARER_PREFIX:
            return False
        expiry = self._expiry.get(authorization[7:].strip())
        return expiry is not None and now < expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        # A long run issues many tokens; forget the expired ones so memory stays bounded.
        self._expiry = {token: expiry for token, expiry in self._expiry.items() if now < expiry}
        self._next_purge = max(1024, 2 * len(self._expiry))
