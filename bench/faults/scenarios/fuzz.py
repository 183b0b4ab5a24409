"""Hypothesis as the bad_input scenario's case generator: the same cases on every run, and valid values.

A fleet run (worker processes, a sandbox, the broker) is far too costly to start once per example, so
Hypothesis does not drive the run: :func:`generated` has Hypothesis draw ``count`` cases, one per
example of a ``@given`` function that only collects them, under ``derandomize=True`` (a seed fixed by
the function, so CI meets the same cases every time) with the generate phase alone (nothing fails
inside, so there is nothing to shrink).  The scenario then sends every case through one run and checks
the promises for all of them; a failing case is reported as it was sent.  ``strategy.example()`` is
not used: Hypothesis meant it for interactive exploration only.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

T = TypeVar("T")

VIN_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
# Characters a VIN, a reference or a date must not hold; a line break too, which Python's ``$`` lets
# through at the end of a string.
FORBIDDEN = " .,;:!?*#%&+=<>\"'`~|{}[]()\t\n\r\x00é€🚗"


def generated(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """``count`` cases drawn from ``strategy``: the same ones on every run of the same code."""
    cases: list[T] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: T) -> None:
        cases.append(case)

    collect()
    return cases


def vins() -> st.SearchStrategy[str]:
    return st.text(VIN_LETTERS, min_size=17, max_size=17)


def manufacturer_references() -> st.SearchStrategy[str]:
    return st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/-", min_size=1, max_size=20
    )


def dvsa_references() -> st.SearchStrategy[str]:
    return st.builds(
        lambda letters, year, serial: f"{letters}/{year}/{serial:03d}",
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=3),
        st.integers(2000, 2030),
        st.integers(0, 999),
    )


def dates() -> st.SearchStrategy[dt.date]:
    return st.dates(dt.date(2000, 1, 1), dt.date(2025, 12, 31))


def not_dates() -> st.SearchStrategy[str]:
    """Text that no reader of ISO dates takes for one."""
    near_misses = st.sampled_from(
        ["2025-02-30", "2025-13-01", "2025-1-1", "20250101", "2025-W01-1", "01-02-2025"]
    )
    return st.one_of(near_misses, st.text(max_size=30).filter(_not_iso_date))


def _not_iso_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return True
    return False


def spoiled(valid: st.SearchStrategy[str], forbidden: str = FORBIDDEN) -> st.SearchStrategy[str]:
    """A valid value with one of its characters replaced by one of ``forbidden``."""
    return st.builds(
        lambda text, char, at: text[: at % len(text)] + char + text[at % len(text) + 1 :],
        valid.filter(bool),
        st.sampled_from(forbidden),
        st.integers(0, 100),
    )
