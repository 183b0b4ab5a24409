"""A command's history across deliveries, carried in message headers so any worker can continue it.

``x-attempts`` (DVSA attempts so far), ``x-waits`` (those that waited for a create or a token rather
than failed), ``x-first-seen`` (when the fleet first took it, for the not-found
horizon), ``x-maybe-applied`` (an earlier attempt may have reached DVSA: a 404 on delete then means it
was deleted by that attempt) and ``x-history`` (one short line per attempt, newest last, bounded).

Only the fleet writes these headers, so they are read only from a message a fleet user sent
(:mod:`recalls.workers.senders`); a command from anyone else starts as a first attempt, whatever it carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from aio_pika.abc import AbstractIncomingMessage

HISTORY_LIMIT = 20
CLOCK_DRIFT = 3600.0  # s a publisher's or another worker's clock may be ahead of ours


def _header(message: AbstractIncomingMessage, name: str) -> object:
    return (message.headers or {}).get(name)


def _first_seen(value: object, now: float) -> float:
    """The header's time if it is one (not in the future by more than clocks drift), else now."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= now + CLOCK_DRIFT:
        return float(value)
    return now


@dataclass(frozen=True)
class Attempts:
    count: int
    first_seen: float
    maybe_applied: bool
    history: tuple[str, ...] = ()
    waits: int = 0  # attempts that waited (for a create, a token) rather than failed

    @classmethod
    def of(cls, message: AbstractIncomingMessage, *, trusted: bool, now: float | None = None) -> Attempts:
        """Read the history if ``trusted``; a redelivery means a worker may have called DVSA and then died."""
        now = time.time() if now is None else now
        if not trusted:
            return cls(count=0, first_seen=now, maybe_applied=bool(message.redelivered))
        count = _header(message, "x-attempts")
        waits = _header(message, "x-waits")
        history = _header(message, "x-history")
        return cls(
            count=count if isinstance(count, int) and count >= 0 else 0,
            first_seen=_first_seen(_header(message, "x-first-seen"), now),
            maybe_applied=bool(_header(message, "x-maybe-applied")) or bool(message.redelivered),
            history=tuple(str(h) for h in history) if isinstance(history, list | tuple) else (),
            waits=waits if isinstance(waits, int) and not isinstance(waits, bool) and waits >= 0 else 0,
        )

    def after(self, outcome: str, *, maybe_sent: bool, waited: bool = False) -> Attempts:
        """The history once this attempt, which ended in ``outcome``, is added."""
        return replace(
            self,
            count=self.count + 1,
            waits=self.waits + waited,
            maybe_applied=self.maybe_applied or maybe_sent,
            history=(*self.history, outcome)[-HISTORY_LIMIT:],
        )

    @property
    def last_error(self) -> str:
        return self.history[-1] if self.history else ""

    def headers(self) -> dict[str, object]:
        return {
            "x-attempts": self.count,
            "x-waits": self.waits,
            # Whole seconds: pamqp sends a Python float as a 32-bit float, about 128 s coarse today.
            "x-first-seen": round(self.first_seen),
            "x-maybe-applied": self.maybe_applied,
            "x-history": list(self.history),
            "x-last-error": self.last_error,
        }
