"""One sandbox's whole mutable world: recalls, tokens, rate limiters, faults, journal and stats.

The HTTP handlers share one :class:`Sandbox`; tests that start the sandbox in-process can reach it too.
"""

from __future__ import annotations

import time

from recalls.sandbox.config import SandboxConfig
from recalls.sandbox.faults import FaultInjector
from recalls.sandbox.journal import Journal
from recalls.sandbox.ratelimit import SlidingWindowLimiter
from recalls.sandbox.state import RecallStore
from recalls.sandbox.stats import Stats
from recalls.sandbox.tokens import TokenStore
from recalls.sandbox.verbs import Verb


class Sandbox:
    """The state behind one running sandbox."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = RecallStore()
        self.tokens = TokenStore(config.token_ttl)
        self.faults = FaultInjector(config.faults, config.seed, now=time.monotonic())
        self.limiters = {verb: SlidingWindowLimiter(config.rate_limit) for verb in Verb}
        self.journal = Journal(config.journal_size)
        self.stats = Stats()

    def reset(self) -> None:
        """Forget recalls, journal, stats, rate windows and faults.

        Issued tokens are kept on purpose: a worker that holds a cached token keeps working across a reset
        between test cases, just as DVSA's tokens outlive anything done to DVSA's data.
        """
        self.store.clear()
        self.journal.clear()
        self.stats.clear()
        self.faults.reset(now=time.monotonic())
        for limiter in self.limiters.values():
            limiter.clear()
