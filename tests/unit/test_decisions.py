"""Every DVSA reply is classified as docs/design.md decisions 16-19 say, a 409 only once DVSA's holdings
confirm it, and retries climb the tiers (decision 21)."""

from __future__ import annotations

import datetime as dt

import pytest

from recalls.shared.contracts import Command, CreateCommand, DeleteCommand, FixCommand, GetCommand
from recalls.shared.dvsa.client import DvsaReply, DvsaTransportError
from recalls.workers.attempts import Attempts
from recalls.workers.decisions import (
    Confirm,
    Done,
    Fail,
    Retry,
    confirm,
    decide,
    decide_transport,
    issued_in_future,
)
from recalls.workers.schedule import Later, schedule

VIN = "WAUZZZF49HA036784"
CREATE = CreateCommand(
    vin=VIN, manufacturer_campaign_reference="C1", recall_campaign_start_date=dt.date(2024, 1, 1)
)
FIX = FixCommand(vin=VIN, manufacturer_campaign_reference="C1", rectification_date=dt.date(2024, 2, 1))
REOPEN = FixCommand(
    vin=VIN,
    manufacturer_campaign_reference="C1",
    rectification_date=dt.date(2024, 2, 1),
    repair_status="NOT_FIXED",
)
DELETE = DeleteCommand(vin=VIN, manufacturer_campaign_reference="C1")
GET = GetCommand(vin=VIN)
FIRST = Attempts(count=0, first_seen=0.0, maybe_applied=False)
AFTER_TIMEOUT = Attempts(count=1, first_seen=0.0, maybe_applied=True)
TIERS = (1.0, 5.0, 30.0)


def reply(status: int, message: str | None = None, **extra: object) -> DvsaReply:
    body: dict[str, object] = {"errorMessage": message} if message else {}
    return DvsaReply(status=status, body=body, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "answer", "attempts", "expected"),
    [
        (CREATE, reply(201), FIRST, Done("applied")),
        (FIX, reply(204), FIRST, Done("applied")),
        (FIX, reply(400, "Vehicle recall has already been marked as fixed"), FIRST, Done("already_applied")),
        (
            REOPEN,
            reply(400, "Vehicle recall has already been marked as not fixed"),
            FIRST,
            Done("already_applied"),
        ),
        (DELETE, reply(204), FIRST, Done("applied")),
        (DELETE, reply(404), AFTER_TIMEOUT, Done("already_applied")),
        (GET, reply(200), FIRST, Done("applied")),
        (GET, reply(404), FIRST, Done("applied")),
    ],
)
def test_successes_and_repeats(
    command: Command, answer: DvsaReply, attempts: Attempts, expected: Done
) -> None:
    assert decide(command, answer, attempts) == expected


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (CREATE, reply(400, "Invalid date format")),
        (FIX, reply(400, "Recall rectification date cannot be before recall campaign start date")),
        (REOPEN, reply(400, "Vehicle recall has already been marked as fixed")),  # not what it asked
        (DELETE, reply(400, "Vehicle recall has already been marked as fixed")),  # fixed cannot be deleted
        (CREATE, reply(404)),
    ],
)
def test_permanent_failures(command: Command, answer: DvsaReply) -> None:
    assert isinstance(decide(command, answer, FIRST), Fail)


@pytest.mark.parametrize("status", [401, 403, 408, 500, 502, 503])
def test_transient_statuses_retry(status: int) -> None:
    decision = decide(CREATE, reply(status), FIRST)
    assert isinstance(decision, Retry)
    assert not decision.not_found


def test_early_404_on_fix_and_delete_waits_for_the_create() -> None:
    for command in (FIX, DELETE):
        decision = decide(command, reply(404), FIRST)
        assert isinstance(decision, Retry)
        assert decision.not_found


def test_429_honours_retry_after() -> None:
    decision = decide(GET, reply(429, retry_after=12.0), FIRST)
    assert isinstance(decision, Retry)
    assert decision.min_delay == 12.0
    assert schedule(
        decision, attempts_made=1, first_seen=0, now=0, tiers=TIERS, not_found_horizon=60
    ) == Later(2)


def test_transport_errors_retry() -> None:
    assert isinstance(decide_transport(DvsaTransportError("ReadTimeout", maybe_sent=True)), Retry)


def test_retries_climb_tiers_then_dead_letter() -> None:
    retry = Retry("DVSA 500")
    tiers = [
        schedule(retry, attempts_made=n, first_seen=0, now=0, tiers=TIERS, not_found_horizon=60)
        for n in (1, 2, 3, 4)
    ]
    assert tiers[:3] == [Later(0), Later(1), Later(2)]
    assert isinstance(tiers[3], Fail)
    assert "gave up after 4 failed attempts" in tiers[3].reason


def test_waits_for_a_create_or_a_token_do_not_use_up_the_failures() -> None:
    failed = Retry("DVSA 503")
    # 10 attempts, 8 of which waited (404s for the create, no token): 2 failures, tier 1.
    assert schedule(
        failed, attempts_made=10, waits=8, first_seen=0, now=0, tiers=TIERS, not_found_horizon=60
    ) == Later(1)
    no_token = Retry("token endpoint unreachable", waiting=True)
    assert no_token.waits
    assert schedule(
        no_token, attempts_made=100, waits=100, first_seen=0, now=10**6, tiers=TIERS, not_found_horizon=60
    ) == Later(min(2, len(TIERS) - 1))


def test_attempts_count_their_waits_across_deliveries() -> None:
    after = FIRST.after("404", maybe_sent=False, waited=True).after("503", maybe_sent=True)
    assert (after.count, after.waits) == (2, 1)
    assert after.headers()["x-waits"] == 1


def test_not_found_retries_until_the_horizon() -> None:
    retry = Retry("DVSA 404", not_found=True)
    assert schedule(
        retry, attempts_made=50, first_seen=0, now=59, tiers=TIERS, not_found_horizon=60
    ) == Later(2)
    late = schedule(retry, attempts_made=3, first_seen=0, now=61, tiers=TIERS, not_found_horizon=60)
    assert isinstance(late, Fail)
    assert "still not found" in late.reason


def test_attempts_remember_that_dvsa_may_have_applied() -> None:
    after = FIRST.after("ReadTimeout", maybe_sent=True).after("500", maybe_sent=False)
    assert after.count == 2
    assert after.maybe_applied
    assert after.history == ("ReadTimeout", "500")
    assert after.headers()["x-last-error"] == "500"


CONFLICT = reply(
    409, "Vehicle already registered with VIN: WAUZZZF49HA036784 and DvsaCampaignReference: R/2022/001"
)
CREATE_WITH_DVSA_REF = CreateCommand(
    vin=VIN,
    manufacturer_campaign_reference="C1",
    dvsa_campaign_reference="R/2024/007",
    recall_campaign_start_date=dt.date(2024, 1, 1),
)


def holds(*recalls: dict[str, str]) -> DvsaReply:
    """DVSA's answer to a get of the vehicle."""
    return DvsaReply(status=200, body={"vin": VIN, "recalls": list(recalls)})


C1_OPEN = {"manufacturerCampaignReference": "C1", "repairStatus": "NOT_FIXED"}
C1_FIXED = {"manufacturerCampaignReference": "C1", "repairStatus": "FIXED"}
OTHER = {
    "manufacturerCampaignReference": "OTHER",
    "dvsaCampaignReference": "R/2022/001",
    "repairStatus": "NOT_FIXED",
}


@pytest.mark.parametrize("command", [CREATE, FIX, DELETE, GET])
def test_a_409_is_never_taken_at_its_word(command: Command) -> None:
    assert decide(command, CONFLICT, FIRST) == Confirm(CONFLICT)
    assert decide(command, CONFLICT, AFTER_TIMEOUT) == Confirm(CONFLICT)


@pytest.mark.parametrize(
    ("command", "held"),
    [
        (CREATE, holds(OTHER, C1_OPEN)),
        (CREATE, holds(C1_FIXED)),  # held, though fixed since: the create itself was applied
        (CREATE_WITH_DVSA_REF, holds({**C1_OPEN, "dvsaCampaignReference": "R/2024/007"})),
        (FIX, holds(C1_FIXED)),
        (REOPEN, holds(C1_OPEN)),
        (DELETE, holds(OTHER)),
        (DELETE, DvsaReply(status=404)),
    ],
)
def test_a_409_is_a_repeat_when_dvsa_holds_what_the_command_asked_for(
    command: Command, held: DvsaReply
) -> None:
    assert confirm(command, CONFLICT, held) == Done("already_applied")


@pytest.mark.parametrize(
    ("command", "held"),
    [
        (CREATE, holds(OTHER)),  # DVSA's mock: any known VIN, naming its first campaign
        (CREATE, DvsaReply(status=404)),
        (CREATE_WITH_DVSA_REF, holds({**C1_OPEN, "dvsaCampaignReference": "R/2024/999"})),
        (CREATE_WITH_DVSA_REF, holds(C1_OPEN)),  # DVSA holds C1 with no DVSA reference
        (FIX, holds(C1_OPEN)),
        (REOPEN, holds(C1_FIXED)),
        (DELETE, holds(C1_OPEN)),
        (GET, holds(C1_OPEN)),
    ],
)
def test_any_other_409_is_a_conflict_with_dvsas_message(command: Command, held: DvsaReply) -> None:
    decision = confirm(command, CONFLICT, held)
    assert isinstance(decision, Fail)
    assert decision.kind == "conflict"
    assert decision.reason.startswith("conflict: DVSA 409")
    assert "DvsaCampaignReference: R/2022/001" in decision.reason


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_a_409_whose_confirmation_failed_is_asked_again(status: int) -> None:
    decision = confirm(CREATE, CONFLICT, reply(status))
    assert isinstance(decision, Retry)
    assert not decision.waits


def test_a_command_issued_beyond_the_clock_skew_fails_and_one_within_it_does_not() -> None:
    issued = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    command = GetCommand(vin=VIN, issued_at=issued)
    assert issued_in_future(command, now=issued.timestamp() - 300, max_skew=300) is None
    early = issued_in_future(command, now=issued.timestamp() - 7200, max_skew=300)
    assert early is not None and early.kind == "issued_in_future"
    assert early.reason.startswith("issued_in_future: issued_at 2030-01-01T00:00:00+00:00 is 7200 s ahead")
