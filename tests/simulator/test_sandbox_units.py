"""The sandbox's building blocks on their own, with explicit times: no server, no waiting."""

from __future__ import annotations

import pytest

from recalls.sandbox import rules
from recalls.sandbox.faults import Fault, FaultInjector, FaultSettings, FaultSettingsError
from recalls.sandbox.journal import Journal, JournalEntry
from recalls.sandbox.ratelimit import SlidingWindowLimiter, SlidingWindowLog
from recalls.sandbox.state import (
    ALREADY_FIXED,
    ALREADY_NOT_FIXED,
    RECTIFIED_BEFORE_START,
    RecallConflict,
    RecallNotFound,
    RecallRefused,
    RecallStore,
    RepairStatus,
)
from recalls.sandbox.tokens import TokenStore
from tests.support.sandbox_helpers import throwaway_config
from tests.support.windows import max_in_any_window


class TestSlidingWindowLimiter:
    def test_admits_the_limit_then_refuses_within_the_second(self) -> None:
        limiter = SlidingWindowLimiter(3)
        assert [limiter.admit(t).admitted for t in (0.0, 0.1, 0.2, 0.3, 0.99)] == [
            True,
            True,
            True,
            False,
            False,
        ]

    def test_a_slot_frees_exactly_one_second_after_the_oldest_admission(self) -> None:
        limiter = SlidingWindowLimiter(2)
        limiter.admit(10.0)
        limiter.admit(10.5)
        assert not limiter.admit(10.999).admitted
        assert limiter.admit(11.0).admitted
        assert not limiter.admit(11.2).admitted
        assert limiter.admit(11.5).admitted

    def test_retry_after_is_whole_seconds_never_zero(self) -> None:
        limiter = SlidingWindowLimiter(1)
        limiter.admit(0.0)
        refused = limiter.admit(0.9)
        assert not refused.admitted
        assert refused.retry_after == 1  # 0.1 s left, rounded up to a whole second
        assert refused.in_window == 1

    def test_no_window_ever_holds_more_than_the_limit_however_arrivals_bunch(self) -> None:
        limiter = SlidingWindowLimiter(5)
        arrivals = sorted([i * 0.013 for i in range(300)] + [1.0, 1.0, 1.0, 2.5, 2.5, 2.5, 2.5])
        admitted = [t for t in arrivals if limiter.admit(t).admitted]
        assert max_in_any_window(admitted) == 5
        assert len(admitted) >= 5 * 3  # and it does admit the limit every second

    def test_clear_forgets_the_window(self) -> None:
        limiter = SlidingWindowLimiter(1)
        limiter.admit(0.0)
        limiter.clear()
        assert limiter.admit(0.1).admitted

    def test_limit_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            SlidingWindowLimiter(0)


def test_window_log_counts_arrivals_of_the_last_second() -> None:
    log = SlidingWindowLog()
    assert [log.add(t) for t in (0.0, 0.4, 0.8, 1.2, 1.3)] == [1, 2, 3, 3, 4]
    assert log.count(2.5) == 0
    assert log.seconds_until_room(2.5) == 0.0


class TestFaults:
    def test_settings_validate_each_field_by_name(self) -> None:
        with pytest.raises(FaultSettingsError, match=r"^error_rate: ") as caught:
            FaultSettings().updated({"error_rate": 1.5})
        assert caught.value.field == "error_rate"
        with pytest.raises(FaultSettingsError, match=r"^drop_rate: must be a number"):
            FaultSettings().updated({"drop_rate": "often"})
        with pytest.raises(FaultSettingsError, match=r"^latency_ms: must be a number"):
            FaultSettings().updated({"latency_ms": True})
        with pytest.raises(FaultSettingsError, match=r"^flood_rate: unknown fault"):
            FaultSettings().updated({"flood_rate": 0.1})
        with pytest.raises(FaultSettingsError, match=r"^hang_seconds: "):
            FaultSettings(hang_seconds=-1)

    def test_same_seed_same_fates(self) -> None:
        settings = FaultSettings(error_rate=0.3, drop_rate=0.1, timeout_rate=0.2)
        first = FaultInjector(settings, seed=7, now=0.0)
        second = FaultInjector(settings, seed=7, now=0.0)
        fates = [first.roll() for _ in range(200)]
        assert fates == [second.roll() for _ in range(200)]
        assert set(fates) == set(Fault)  # every kind of fate turns up in 200 rolls

    def test_certain_faults(self) -> None:
        assert FaultInjector(FaultSettings(drop_rate=1), seed=1, now=0).roll() is Fault.DROP
        assert FaultInjector(FaultSettings(timeout_rate=1), seed=1, now=0).roll() is Fault.TIMEOUT
        errors = FaultInjector(FaultSettings(error_rate=1), seed=1, now=0)
        assert {errors.roll() for _ in range(50)} == {Fault.ERROR_500, Fault.ERROR_503}
        assert FaultInjector(FaultSettings(), seed=1, now=0).roll() is Fault.NONE

    def test_storm_and_outage_count_down_from_when_they_are_set(self) -> None:
        injector = FaultInjector(FaultSettings(storm_seconds=5), seed=None, now=100.0)
        assert injector.storm_remaining(103.0) == pytest.approx(2.0)
        injector.update({"token_outage_seconds": 10}, now=200.0)
        assert injector.storm_remaining(200.0) == 0.0
        assert injector.outage_remaining(204.0) == pytest.approx(6.0)
        assert injector.snapshot(204.0)["token_outage_seconds"] == pytest.approx(6.0)
        injector.reset(now=205.0)
        assert injector.outage_remaining(205.0) == 0.0
        assert injector.settings == FaultSettings()


class TestTokens:
    def test_a_token_is_valid_until_its_ttl_runs_out(self) -> None:
        tokens = TokenStore(ttl=10)
        token = tokens.issue(now=0.0)
        assert tokens.accepts(f"Bearer {token}", now=9.9)
        assert tokens.accepts(f"bearer {token}", now=0.0)  # the scheme is case-insensitive
        assert not tokens.accepts(f"Bearer {token}", now=10.0)

    @pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "token"])
    def test_malformed_headers_are_refused(self, header: str | None) -> None:
        tokens = TokenStore(ttl=10)
        tokens.issue(now=0.0)
        assert not tokens.accepts(header, now=1.0)

    def test_expired_tokens_are_forgotten_as_the_store_grows(self) -> None:
        tokens = TokenStore(ttl=1)
        for second in range(3000):
            tokens.issue(now=float(second))
        assert len(tokens) < 2100


class TestRules:
    @pytest.mark.parametrize("vin", ["WAUZZZF49HA036784", "SAJAC05P5VD12345", "wauzzzf49ha036784"])
    def test_valid_vins_are_upper_cased(self, vin: str) -> None:
        assert rules.vin(vin) == vin.upper()

    @pytest.mark.parametrize(
        "vin", ["", "WAUZZZF49HA0367", "WAUZZZF49HA0367845", "WAUZZZF49HA03678-", "WAUZZZF49HA03678\u00c4"]
    )
    def test_invalid_vins(self, vin: str) -> None:
        with pytest.raises(rules.RuleViolation, match="vin"):
            rules.vin(vin)

    @pytest.mark.parametrize("reference", ["A", "a_b/c\\d-9", "X" * 49])
    def test_valid_manufacturer_references(self, reference: str) -> None:
        assert rules.manufacturer_reference(reference) == reference

    @pytest.mark.parametrize("reference", ["", "X" * 50, "has space", "semi;colon", 12])
    def test_invalid_manufacturer_references(self, reference: object) -> None:
        with pytest.raises(rules.RuleViolation, match="manufacturerCampaignReference"):
            rules.manufacturer_reference(reference)

    @pytest.mark.parametrize("reference", ["R/2022/123", "ABC/1999/001"])
    def test_valid_dvsa_references(self, reference: str) -> None:
        assert rules.dvsa_reference(reference) == reference

    @pytest.mark.parametrize(
        "reference", ["R/22/123", "R/2022/1234", "1/2022/123", "R-2022-123", "R/2022/123x"]
    )
    def test_invalid_dvsa_references(self, reference: str) -> None:
        with pytest.raises(rules.RuleViolation, match="dvsaCampaignReference"):
            rules.dvsa_reference(reference)

    @pytest.mark.parametrize("raw", ["2022-02-30", "2022-13-01", "22-01-01", "2022/01/01", "20220101"])
    def test_dates_must_be_real_and_written_yyyy_mm_dd(self, raw: str) -> None:
        with pytest.raises(rules.RuleViolation, match="recallCampaignStartDate"):
            rules.date(raw, "recallCampaignStartDate")

    def test_fixed_needs_a_rectification_date_but_reopening_does_not(self) -> None:
        with pytest.raises(rules.RuleViolation, match="rectificationDate"):
            rules.update_request({"repairStatus": "FIXED"})
        reopen = rules.update_request({"repairStatus": "NOT_FIXED"})
        assert reopen.repair_status is RepairStatus.NOT_FIXED
        assert reopen.rectification_date is None


class TestRecallStore:
    def test_lifecycle(self) -> None:
        store = RecallStore(clock=lambda: "2024-01-01T00:00:00.000Z")
        store.create("wauzzzf49ha036784", "M1", "R/2022/123", "2022-08-07")
        with pytest.raises(RecallConflict):
            store.create("WAUZZZF49HA036784", "M1", None, "2022-08-07")
        with pytest.raises(RecallConflict, match="dvsaCampaignReference"):
            store.create("WAUZZZF49HA036784", "M2", "R/2022/123", "2022-08-07")
        with pytest.raises(RecallRefused, match=RECTIFIED_BEFORE_START):
            store.set_repair_status("WAUZZZF49HA036784", "M1", None, RepairStatus.FIXED, "2022-08-06")
        store.set_repair_status("WAUZZZF49HA036784", None, "R/2022/123", RepairStatus.FIXED, "2022-08-07")
        with pytest.raises(RecallRefused, match=ALREADY_FIXED):
            store.delete("WAUZZZF49HA036784", "M1", None)
        store.set_repair_status("WAUZZZF49HA036784", "M1", None, RepairStatus.NOT_FIXED, None)
        with pytest.raises(RecallRefused, match=ALREADY_NOT_FIXED):
            store.set_repair_status("WAUZZZF49HA036784", "M1", None, RepairStatus.NOT_FIXED, None)
        store.delete("WAUZZZF49HA036784", "M1", None)
        assert len(store) == 0
        with pytest.raises(RecallNotFound):
            store.delete("WAUZZZF49HA036784", "M1", None)


def test_the_conflict_rule_is_vin_or_campaign() -> None:
    assert throwaway_config().conflict == "campaign"
    assert throwaway_config(conflict="vin").conflict == "vin"
    with pytest.raises(ValueError, match="conflict"):
        throwaway_config(conflict="bogus")


def test_journal_keeps_only_the_newest() -> None:
    journal = Journal(size=3)
    for index in range(5):
        journal.record(JournalEntry("get", "GET", f"/{index}", "", 200, None, float(index)))
    assert [entry.path for entry in journal.newest()] == ["/2", "/3", "/4"]
    assert [entry.path for entry in journal.newest(2)] == ["/3", "/4"]
