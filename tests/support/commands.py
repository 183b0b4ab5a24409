"""Commands for tests: a VIN per number, and a create of it, so each test picks vehicles of its own."""

from __future__ import annotations

import datetime as dt

from recalls.shared.contracts import CreateCommand

START = dt.date(2024, 3, 1)


def vin(n: int) -> str:
    return f"WAUZZZ8V{n:09d}"


def create(n: int, campaign: str = "CAMP1") -> CreateCommand:
    return CreateCommand(
        vin=vin(n), manufacturer_campaign_reference=campaign, recall_campaign_start_date=START
    )
