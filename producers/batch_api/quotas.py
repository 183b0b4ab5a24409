"""Each API key's quota: so many batch submits a minute, and so many batches open at once.

Decided purely from the key's usage as the store counts it (:class:`recalls.shared.store.batches.KeyUsage`):
the store is what every API process shares, so the quota holds however many serve the key.  A key
over either limit is refused with 429 and ``Retry-After``: for the rate, the seconds until the submit
that fills the window leaves it; for open batches, :data:`OPEN_RETRY_AFTER`, since when a batch ends
depends on DVSA's pace, not on a clock.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from recalls.producers.batch_api.errors import ApiError
from recalls.shared.store.batches import Admission, KeyUsage

RATE_WINDOW = dt.timedelta(minutes=1)
OPEN_RETRY_AFTER = 60  # seconds: about what a batch of a few thousand VINs takes at DVSA's 25/s
_NAME = "BULK_RECALL_BATCH_RATE_LIMITED"


@dataclass(frozen=True)
class Quota:
    """A key may start ``per_minute`` batches a minute and have ``open_batches`` not yet ended."""

    per_minute: int
    open_batches: int

    @property
    def admission(self) -> Admission:
        """The store's gate on a key's new batch: it raises this quota's refusal."""
        return Admission(window=RATE_WINDOW, check=self.check)

    def check(self, usage: KeyUsage) -> None:
        """Raise the refusal of a key with ``usage``, if it is over the quota."""
        refused = self.refusal(usage)
        if refused is not None:
            raise refused

    def refusal(self, usage: KeyUsage) -> ApiError | None:
        """429 for a key with ``usage`` (its batches started within :data:`RATE_WINDOW`), else None."""
        if len(usage.started) >= self.per_minute:
            # Once the submit that filled the window leaves it, the key is under the limit again.
            freed = usage.started[-self.per_minute] + RATE_WINDOW
            wait = max(1, math.ceil((freed - usage.at).total_seconds()))
            message = f"key: {self.per_minute} batches submitted in the last minute, the most allowed"
            return _limited(f"{message}; retry in {wait} s", wait)
        if usage.open >= self.open_batches:
            message = f"key: {usage.open} batches still open, the most allowed is {self.open_batches}"
            return _limited(f"{message}; retry when one has completed", OPEN_RETRY_AFTER)
        return None


def _limited(message: str, retry_after: int) -> ApiError:
    return ApiError(429, _NAME, message, headers={"Retry-After": str(retry_after)})
