"""One delivery, start to finish: decode, call DVSA, decide, report, and only then acknowledge.

Nothing a message contains can crash the worker or block its queue: a message from a sender the worker
may not take commands from (:mod:`recalls.workers.senders`), an undecodable or invalid body, or a command
issued too far in the future goes straight to the dead-letter queue with the reason; any other failure
either schedules a retry or dead-letters with the reason.  If a replacement cannot be published, the
delivery is requeued rather than acked, so the command is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from recalls.shared import logs
from recalls.shared.amqp import PublishFailed
from recalls.shared.contracts import (
    VERBS,
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    Lane,
    OutcomeEvent,
    Recall,
)
from recalls.shared.dvsa.client import (
    BudgetTaken,
    DvsaClient,
    DvsaReply,
    DvsaTransportError,
    LastLook,
    Withdrawn,
)
from recalls.shared.dvsa.tokens import TokenUnavailable
from recalls.shared.settings import Settings
from recalls.shared.topology import lane_of, tier_label
from recalls.shared.validation import InvalidCommand, decode_command
from recalls.workers.attempts import Attempts
from recalls.workers.decisions import (
    Confirm,
    Decision,
    Done,
    Fail,
    Retry,
    confirm,
    decide,
    decide_transport,
    describe,
    issued_in_future,
)
from recalls.workers.doubts import DeleteInDoubt, DeleteMark, Doubts
from recalls.workers.reporting import Reporter
from recalls.workers.schedule import Later, schedule
from recalls.workers.senders import UNTRUSTED_SENDER, Senders

log = logging.getLogger("recalls.worker")
REQUEUE_READY_WAIT_S = 30.0  # the most a failed delivery waits for its channel before going back
REQUEUE_PAUSE_S = 1.0  # and then at least this long, so a fault that persists cannot spin
Clock = Callable[[], float]


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _recalls(reply: DvsaReply) -> list[Recall] | None:
    items = reply.body.get("recalls")
    if not isinstance(items, list):
        return [] if reply.status == 404 else None
    return [
        Recall(
            manufacturer_campaign_reference=str(item.get("manufacturerCampaignReference", "")),
            dvsa_campaign_reference=item.get("dvsaCampaignReference"),
            recall_campaign_start_date=item.get("recallCampaignStartDate"),
            repair_status=item.get("repairStatus"),
        )
        for item in items
        if isinstance(item, dict)
    ]


@dataclass(frozen=True)
class Attempt:
    """One delivery's attempt, as the handler settles, reports and logs it."""

    message: AbstractIncomingMessage
    command: Command
    attempts: Attempts  # this attempt included
    reply: DvsaReply | None  # None: DVSA did not answer, or the call was withdrawn unsent
    started: float


class Handler:
    """Handles deliveries of every verb; one per worker process."""

    def __init__(
        self,
        settings: Settings,
        dvsa: DvsaClient,
        reporter: Reporter,
        doubts: Doubts,
        senders: Senders,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._settings = settings
        self._senders = senders
        self._doubts = doubts
        self._dvsa = dvsa
        self._reporter = reporter
        self._clock = clock
        self._metrics = dvsa.metrics

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        with logs.correlated(message.correlation_id or message.message_id):
            await self._handle_safely(message)

    async def _handle_safely(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._handle(message)
        except PublishFailed:
            log.warning("could not publish a replacement; requeueing", extra=_ids(message))
            await self._requeue(message)
        except Exception:
            # A fault of ours must not lose the command; the queue's delivery limit dead-letters a
            # message that keeps failing this way, so it cannot loop for ever.
            log.exception("unexpected failure handling a command; requeueing", extra=_ids(message))
            await self._requeue(message)

    async def _requeue(self, message: AbstractIncomingMessage) -> None:
        """Give the delivery back once the publishing channel is open again, and not at once.

        Requeued at once, it comes straight back and fails the same way (a channel still reopening after
        a reconnect, a missing exchange): a tight loop that spends the queue's delivery limit in moments.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REQUEUE_READY_WAIT_S):
                await self._reporter.ready()
        await asyncio.sleep(REQUEUE_PAUSE_S)
        # Its channel closed meanwhile: the broker has already put the delivery back.
        with contextlib.suppress(ChannelInvalidStateError, AMQPError):
            await message.nack(requeue=True)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        sender = message.user_id
        attempts = Attempts.of(message, trusted=self._senders.is_fleet(sender), now=self._clock())
        if not self._senders.may_command(sender):
            reason = self._senders.refusal(sender, "RECALLS_PUBLISHER_USERS or RECALLS_FLEET_USERS")
            await self._refuse(message, reason, UNTRUSTED_SENDER, attempts)
            return
        try:
            command = decode_command(message.body)
        except InvalidCommand as exc:
            await self._refuse(message, f"invalid command: {exc}", "invalid_message", attempts)
            return
        # The body's correlation id wins over the AMQP property, as in the outcome event.
        with logs.correlated(command.correlation_id or message.correlation_id or message.message_id):
            await self._apply(message, command, attempts)

    async def _refuse(
        self, message: AbstractIncomingMessage, reason: str, kind: str, attempts: Attempts
    ) -> None:
        """Dead-letter a delivery that is no command this worker may apply (no outcome event: no command)."""
        await self._reporter.dead_letter(message, reason, attempts.headers())
        await message.ack()
        self._metrics.dead_lettered(_verb_of(message), kind)
        log.warning("dead-lettered a delivery (%s)", kind, extra={**_ids(message), "reason": reason})

    async def _apply(self, message: AbstractIncomingMessage, command: Command, attempts: Attempts) -> None:
        started = self._clock()
        early = issued_in_future(command, started, self._settings.max_clock_skew)
        if early is not None:  # before DVSA and the ledger's marks: its issue time would outrank others'
            await self._settle(Attempt(message, command, attempts, None, started), early)
            return
        decision, reply, attempts = await self._attempt(message, command, attempts)
        await self._settle(Attempt(message, command, attempts, reply, started), decision)

    async def _attempt(
        self, message: AbstractIncomingMessage, command: Command, attempts: Attempts
    ) -> tuple[Decision, DvsaReply | None, Attempts]:
        """Call DVSA and decide; the attempts gain this one unless it was withdrawn before it was sent."""
        reply: DvsaReply | None = None
        marks: list[DeleteMark] = []  # a delete's, made at its last look
        try:
            last_look = self._last_look(command, marks, attempts)
            reply = await self._dvsa.call(command, _lane(message), unless=last_look)
            decided = await self._decide(command, reply, attempts, _lane(message))
            decision: Decision = _settle_doubt(command, reply, decided, marks)
            outcome = _describe_reply(reply)
            maybe_sent = reply.status >= 500 or reply.status == 408
        except DvsaTransportError as exc:
            decision, outcome, maybe_sent = decide_transport(exc), exc.kind, exc.maybe_sent
        except (TokenUnavailable, BudgetTaken) as exc:
            decision, outcome, maybe_sent = Retry(str(exc), waiting=True), str(exc), False
        except DeleteInDoubt:
            outcome = "waiting for a delete issued after it to settle"
            decision, maybe_sent = Retry(outcome, not_found=True), False
        except Withdrawn:
            return Done("already_applied"), None, attempts
        if isinstance(command, DeleteCommand):
            await self._delete_settled(command, decision, maybe_sent, marks)
        waited = isinstance(decision, Retry) and decision.waits
        return decision, reply, attempts.after(outcome, maybe_sent=maybe_sent, waited=waited)

    async def _decide(self, command: Command, reply: DvsaReply, attempts: Attempts, lane: Lane) -> Decision:
        """:func:`decide`, and for a 409 what DVSA holds: a get of the vehicle, on the get verb's budget."""
        decision = decide(command, reply, attempts)
        if not isinstance(decision, Confirm):
            return decision
        try:
            held = await self._dvsa.get(GetCommand(vin=command.vin), lane)
        except DvsaTransportError as exc:  # no token, no slot: waits, settled as for the command's own call
            return Retry(f"confirming a 409: {exc}")
        return confirm(command, decision.conflict, held)

    def _last_look(self, command: Command, marks: list[DeleteMark], attempts: Attempts) -> LastLook | None:
        """What is asked at the last moment, once the call's rate slot has come, just before it is sent.

        A create sent then would bring back what a later delete removed; a delete marks what it removes
        first (into ``marks``), so that a create asking meanwhile does not.  Asked again (the gate held
        the call), a delete keeps its first mark: a second would find the first and take it for the
        ledger's own entry.
        """
        if isinstance(command, CreateCommand):
            return partial(self._doubts.superseded, command)
        if not isinstance(command, DeleteCommand):
            return None

        async def mark() -> bool:
            if not marks:
                marks.append(
                    await self._doubts.about_to_delete(command, maybe_applied=attempts.maybe_applied)
                )
            return False

        return mark

    async def _delete_settled(
        self, command: DeleteCommand, decision: Decision, maybe_sent: bool, marks: list[DeleteMark]
    ) -> None:
        """A delete's marks stay while DVSA may have applied it, and go when it surely did not."""
        marked = bool(marks and marks[-1].marked)
        if maybe_sent and not marked:
            await self._doubts.may_have_deleted(command)  # its mark could not be made before sending
        elif not maybe_sent and marked and not isinstance(decision, Done):
            await self._doubts.not_deleted(command, marks[-1])

    async def _settle(self, attempt: Attempt, decision: Decision) -> None:
        message, command, attempts = attempt.message, attempt.command, attempt.attempts
        if isinstance(decision, Retry):
            later = schedule(
                decision,
                attempts_made=attempts.count,
                waits=attempts.waits,
                first_seen=attempts.first_seen,
                now=self._clock(),
                tiers=self._settings.retry_tiers,
                not_found_horizon=self._settings.not_found_horizon,
            )
            if isinstance(later, Later):
                await self._reporter.retry(message, later.tier, attempts.headers())
                await message.ack()
                self._metrics.retried(command.verb, tier_label(self._settings.retry_tiers[later.tier]))
                self._log(attempt, "retry", tier=later.tier)
                return
            decision = later
        if isinstance(decision, Fail):
            headers = {**attempts.headers(), **_dvsa_headers(attempt.reply)}
            await self._reporter.dead_letter(message, decision.reason, headers)
        event = self._event(attempt, decision, await self._rectification_date(command, decision))
        await self._doubts.remember(event)  # before it is reported: a redelivery may ask at once
        await self._reporter.outcome(event, message.reply_to)
        await message.ack()
        self._metrics.command_done(command.verb, event.result)
        if isinstance(decision, Fail):
            self._metrics.dead_lettered(command.verb, decision.kind)
        self._log(attempt, event.result)

    async def _rectification_date(self, command: Command, decision: Done | Fail) -> dt.date | None:
        """The fix's date for the ledger: the command's when DVSA took it; for a repeat, only one known.

        "Already marked as fixed" does not say when: DVSA holds the date of whichever fix came first,
        which the ledger knows if it was the fleet's, and no date is better than a guessed one.
        """
        if not isinstance(command, FixCommand):
            return None
        if isinstance(decision, Done) and decision.result == "already_applied":
            return await self._doubts.rectification_date(command)
        return command.rectification_date

    def _event(
        self, attempt: Attempt, decision: Done | Fail, rectification_date: dt.date | None
    ) -> OutcomeEvent:
        message, command, attempts, reply = attempt.message, attempt.command, attempt.attempts, attempt.reply
        manufacturer = reply.body.get("manufacturer") if reply else None
        return OutcomeEvent(
            message_id=command.message_id,
            # A request/reply caller sets the AMQP property; the body's field wins when both exist.
            correlation_id=command.correlation_id or message.correlation_id,
            verb=command.verb,
            vin=command.vin,
            manufacturer_campaign_reference=getattr(command, "manufacturer_campaign_reference", None),
            dvsa_campaign_reference=getattr(command, "dvsa_campaign_reference", None),
            result=decision.result if isinstance(decision, Done) else "failed",
            dvsa_status=reply.status if reply else None,
            error_code=reply.error_code if reply and reply.status >= 300 else None,
            error_message=reply.error_message if reply and reply.status >= 300 else None,
            reason=decision.reason if isinstance(decision, Fail) else None,
            attempts=attempts.count,
            issued_at=command.issued_at,
            first_seen_at=_when(attempts.first_seen),
            completed_at=_when(self._clock()),
            dvsa_ms=round(reply.elapsed_ms, 2) if reply else None,
            manufacturer=str(manufacturer) if manufacturer is not None else None,
            recalls=_recalls(reply) if reply and command.verb == "get" else None,
            lane=_lane(message),
            recall_campaign_start_date=getattr(command, "recall_campaign_start_date", None),
            rectification_date=rectification_date,
            repair_status=getattr(command, "repair_status", None),
        )

    def _log(self, attempt: Attempt, result: str, **extra: object) -> None:
        command, reply = attempt.command, attempt.reply
        log.info(
            "%s %s %s",
            command.verb,
            command.vin,
            result,
            extra={
                "message_id": command.message_id,
                "correlation_id": command.correlation_id,
                "verb": command.verb,
                "vin": command.vin,
                "result": result,
                "status": reply.status if reply else None,
                "attempt": attempt.attempts.count,
                "duration_ms": round((self._clock() - attempt.started) * 1000, 1),
                **extra,
            },
        )


def _settle_doubt(
    command: Command, reply: DvsaReply, decision: Decision, marks: list[DeleteMark]
) -> Decision:
    """A 404 to a delete that may have been sent before is done only if the ledger held the recall."""
    doubtful = isinstance(decision, Done) and decision.result == "already_applied" and reply.status == 404
    if doubtful and isinstance(command, DeleteCommand) and not (marks and marks[-1].was_created):
        return Retry(describe(reply), not_found=True)
    return decision


def _verb_of(message: AbstractIncomingMessage) -> str:
    """The verb a delivery was routed as, for the metrics of a body that could not be read."""
    verb = (message.routing_key or "").split(".")[0]
    return verb if verb in VERBS else "unknown"


def _lane(message: AbstractIncomingMessage) -> Lane:
    return lane_of(message.routing_key or "")


def _describe_reply(reply: DvsaReply) -> str:
    parts = [str(reply.status), reply.error_code or "", (reply.error_message or "")[:200]]
    return " ".join(part for part in parts if part)


def _dvsa_headers(reply: DvsaReply | None) -> dict[str, object]:
    if reply is None:
        return {}
    return {
        "x-dvsa-status": reply.status,
        "x-dvsa-error-code": reply.error_code or "",
        "x-dvsa-error-message": (reply.error_message or "")[:1000],
    }


def _ids(message: AbstractIncomingMessage) -> dict[str, object]:
    return {"message_id": message.message_id, "routing_key": message.routing_key}
