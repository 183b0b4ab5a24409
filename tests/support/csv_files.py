"""DVSA-format CSV files for bulk tests: a good row per VIN number, and a file of rows."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.support.commands import vin

HEADER = ["VIN", "ManufacturerRecallCampaignReference", "DVSACampaignReference", "RecallCampaignStartDate"]


def good_row(n: int, campaign: str = "CAMP1") -> list[str]:
    return [vin(n), campaign, "", "2025-01-01"]


def write_csv(path: Path, rows: list[list[str]], *, header: bool = True) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        if header:
            writer.writerow(HEADER)
        writer.writerows(rows)
    return path
