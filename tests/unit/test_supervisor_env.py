"""What each child of ``recalls worker --processes N`` is told: who records events, which metrics port."""

from __future__ import annotations

import pytest

from recalls.workers.supervisor import _child_env


def test_each_child_gets_its_own_metrics_port_and_only_the_first_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECALLS_METRICS_PORT", "9464")
    monkeypatch.delenv("RECALLS_RECORD_EVENTS", raising=False)
    first, third = _child_env(0), _child_env(2)
    assert first["RECALLS_METRICS_PORT"] == "9464"
    assert "RECALLS_RECORD_EVENTS" not in first
    assert third["RECALLS_METRICS_PORT"] == "9466"
    assert third["RECALLS_RECORD_EVENTS"] == "false"


def test_no_metrics_port_unless_asked_and_an_explicit_record_setting_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECALLS_METRICS_PORT", raising=False)
    monkeypatch.setenv("RECALLS_RECORD_EVENTS", "true")
    child = _child_env(1)
    assert "RECALLS_METRICS_PORT" not in child
    assert child["RECALLS_RECORD_EVENTS"] == "true"
