"""What a DVSA reply means for a command: done, try again later, or never (docs/design.md, decisions 16-19).

Pure functions of the verb, the command, DVSA's reply and the attempt history, so every rule can be
unit tested without a broker.  DVSA's API is not idempotent while delivery is at least once, so the
replies that a repeated command earns ("already marked as fixed" on fix, 404 on a delete that may
already have happened) count as ``already_applied``, not as failures.

A 409 is not taken at its word: DVSA's own mock answers it for any VIN it already holds, naming another
campaign.  So a 409 is :class:`Confirm`, and :func:`confirm` reads DVSA's answer to a ``get`` of the
vehicle: ``already_applied`` only when DVSA holds what the command asked for, otherwise a permanent
``conflict`` with DVSA's message.  Calling a repeat what was a refusal would report a recall at DVSA
that is not there.

Before any of that, :func:`issued_in_future` refuses a command stamped well after now: issue times
decide which of two commands about a recall is newer (:mod:`recalls.workers.doubts`), so a delete dated 2099
would make every genuine create of its recall count as superseded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recalls.shared.contracts import Command, CreateCommand, DeleteCommand, FixCommand
from recalls.shared.dvsa.client import DvsaReply, DvsaTransportError
from recalls.workers.attempts import Attempts

_ALREADY_FIXED = "already been marked as fixed"
ISSUED_IN_FUTURE = "issued_in_future"
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
    # For the metrics: rejected, conflict, not_found, retries_exhausted or issued_in_future.
    kind: str = "rejected"


@dataclass(frozen=True)
class Confirm:
    """DVSA said 409: ask what it holds (a ``get`` of the vehicle) before calling it a repeat."""

    conflict: DvsaReply


Decision = Done | Retry | Fail
CONFLICT = "conflict"


def describe(reply: DvsaReply) -> str:
    parts = [f"DVSA {reply.status}", reply.error_code, reply.error_message]
    return " ".join(part for part in parts if part)


def decide(command: Command, reply: DvsaReply, attempts: Attempts) -> Decision | Confirm:
    """Classify DVSA's reply to ``command``."""
    status = reply.status
    if 200 <= status < 300:
        return Done("applied")
    if status == 409:
        return Confirm(reply)
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
    return False


def issued_in_future(command: Command, now: float, max_skew: float) -> Fail | None:
    """A :class:`Fail` for a command issued more than ``max_skew`` seconds after ``now``, else None."""
    ahead = command.issued_at.timestamp() - now
    if ahead <= max_skew:
        return None
    reason = (
        f"{ISSUED_IN_FUTURE}: issued_at {command.issued_at.isoformat()} is {ahead:.0f} s ahead of this "
        f"worker's clock (RECALLS_MAX_CLOCK_SKEW allows {max_skew:g} s)"
    )
    return Fail(reason, kind=ISSUED_IN_FUTURE)


def decide_transport(error: DvsaTransportError) -> Retry:
    return Retry(f"no answer from DVSA ({error.kind})")


def confirm(command: Command, conflict: DvsaReply, held: DvsaReply) -> Decision:
    """What a 409 to ``command`` means, given DVSA's answer ``held`` to a get of the vehicle.

    A create is a repeat when DVSA holds its campaign, a fix when DVSA holds the campaign in the status
    the fix asked for, a delete when DVSA no longer holds it; anything else is a conflict, never retried.
    """
    if held.status not in (200, 404):
        return Retry(f"confirming a 409: {describe(held)}")  # the get failed: ask again later
    holds = [item for item in _held_recalls(held) if _names(command, item)]
    if isinstance(command, CreateCommand):
        repeated = bool(holds)
    elif isinstance(command, FixCommand):
        repeated = any(item.get("repairStatus") == command.repair_status for item in holds)
    elif isinstance(command, DeleteCommand):
        repeated = not holds
    else:
        repeated = False
    if repeated:
        return Done("already_applied")
    return Fail(f"{CONFLICT}: {describe(conflict)}", kind=CONFLICT)


def _held_recalls(held: DvsaReply) -> list[dict[str, object]]:
    items = held.body.get("recalls") if held.status == 200 else []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _names(command: Command, item: dict[str, object]) -> bool:
    """DVSA's recall ``item`` is the campaign ``command`` names, by every reference the command gives."""
    wanted = {
        "manufacturerCampaignReference": getattr(command, "manufacturer_campaign_reference", None),
        "dvsaCampaignReference": getattr(command, "dvsa_campaign_reference", None),
    }
    given = {key: value for key, value in wanted.items() if value is not None}
    return bool(given) and all(item.get(key) == value for key, value in given.items())
