"""What a DVSA reply means for a command: done, try again later, or never (DESIGN.md decisions 5-7).

Pure functions of the verb, the command, DVSA's reply and the attempt history, so every rule can be
unit tested without a broker.  DVSA's API is not idempotent while delivery is at least once, so the
replies that a repeated command earns (409 on create, "already marked as fixed" on fix, 404 on a delete
that may already have happened) count as ``already_applied``, not as failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.contracts import Command, DeleteCommand, FixCommand
from shared.dvsa.client import DvsaReply, DvsaTransportError
from workers.attempts import Attempts

_ALREADY_FIXED = "already been marked as fixed"
_ALREADY_NOT_FIXED = "already been marked as not fixed"


@dataclass(frozen=True)
class Done:
    result: Literal["applied", "already_applied"]


@dataclass(frozen=True)
class Retry:
    reason: str
    min_delay: float = 0.0
    not_found: bool = False  # waits up to the horizon for a create that may still be on its way
    waiting: bool = False  # for what is not DVSA's failure (no token yet): it never uses up the attempts

    @property
    def waits(self) -> bool:
        """The attempt does not count towards giving up: it waited for a create, or for a token."""
        return self.not_found or self.waiting


@dataclass(frozen=True)
class Fail:
    reason: str
    kind: str = "rejected"  # for the metrics: rejected, not_found or retries_exhausted


Decision = Done | Retry | Fail


def describe(reply: DvsaReply) -> str:
    parts = [f"DVSA {reply.status}", reply.error_code, reply.error_message]
    return " ".join(part for part in parts if part)


def decide(command: Command, reply: DvsaReply, attempts: Attempts) -> Decision:
    """Classify DVSA's reply to ``command``."""
    status = reply.status
    if 200 <= status < 300:
        return Done("applied")
    repeated = _repeated(command, reply, attempts)
    if repeated:
        return Done("already_applied")
    if status == 404 and command.verb == "get":
        return Done("applied")  # DVSA holds no recall for the vehicle: that is the answer
    if status == 404 and command.verb in ("fix", "delete"):
        return Retry(describe(reply), not_found=True)
    if status == 429:
        return Retry(describe(reply), min_delay=reply.retry_after or 1.0)
    if status in (401, 403, 408) or status >= 500:
        # Credentials can be mended by an operator and 5xx/408 are DVSA's own trouble: keep trying.
        return Retry(describe(reply))
    return Fail(describe(reply))


def _repeated(command: Command, reply: DvsaReply, attempts: Attempts) -> bool:
    message = (reply.error_message or "").lower()
    if isinstance(command, FixCommand) and reply.status == 400:
        wanted = _ALREADY_FIXED if command.repair_status == "FIXED" else _ALREADY_NOT_FIXED
        return wanted in message
    if isinstance(command, DeleteCommand) and reply.status == 404:
        return attempts.maybe_applied
    return command.verb == "create" and reply.status == 409


def decide_transport(error: DvsaTransportError) -> Retry:
    return Retry(f"no answer from DVSA ({error.kind})")
