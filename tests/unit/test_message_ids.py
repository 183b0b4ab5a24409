"""Derived message ids: a rebuilt command keeps its id, another command gets another, the fleet takes it."""

from __future__ import annotations

import datetime as dt

import pytest

from recalls.shared.contracts import FixCommand, GetCommand, Verb
from recalls.shared.message_ids import message_id_for
from recalls.shared.validation import validate

KEY: tuple[Verb, str, str | None, str] = ("fix", "WAUZZZF49HA036784", "RC-2025-07", "order-line-42")


def test_the_same_inputs_give_the_same_id() -> None:
    assert message_id_for(*KEY) == message_id_for(*KEY)
    # Pinned: the id must not change between releases, or a retry across an upgrade would apply twice.
    assert message_id_for(*KEY) == "722fedf7-70b4-8215-fca5-7b047dda0477"


@pytest.mark.parametrize(
    "changed",
    [
        ("create", *KEY[1:]),
        (KEY[0], "WAUZZZF49HA036785", *KEY[2:]),
        (*KEY[:2], "RC-2025-08", KEY[3]),
        (*KEY[:2], None, KEY[3]),
        (*KEY[:3], "order-line-43"),
        # Parts that run into each other still make different keys.
        (*KEY[:2], "RC-2025-07o", "rder-line-42"),
    ],
)
def test_any_field_changed_gives_another_id(changed: tuple[Verb, str, str | None, str]) -> None:
    assert message_id_for(*changed) != message_id_for(*KEY)


def test_the_vin_counts_upper_cased_as_the_fleet_sends_it() -> None:
    assert message_id_for("fix", KEY[1].lower(), *KEY[2:]) == message_id_for(*KEY)


def test_the_id_is_accepted_by_validation() -> None:
    command = FixCommand(
        vin=KEY[1],
        manufacturer_campaign_reference="RC-2025-07",
        rectification_date=dt.date(2026, 1, 5),
        message_id=message_id_for(*KEY),
    )
    assert validate(command).message_id == message_id_for(*KEY)
    check = GetCommand(vin=KEY[1], message_id=message_id_for("get", KEY[1], None, "nightly-2026-01-05"))
    assert validate(check) == check


def test_an_empty_event_id_or_an_unknown_verb_is_refused() -> None:
    with pytest.raises(ValueError, match="event_id must not be empty"):
        message_id_for("fix", KEY[1], KEY[2], "")
    with pytest.raises(ValueError, match="verb must be one of create, fix, delete, get, not 'repair'"):
        message_id_for("repair", KEY[1], KEY[2], KEY[3])  # type: ignore[arg-type]
