"""The configuration reference in docs/operations.md names every setting, and nothing that is not one."""

from __future__ import annotations

import re
from pathlib import Path

from recalls.shared.settings import ENV_PREFIX, Settings

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented() -> list[str]:
    text = OPERATIONS.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(RECALLS_[A-Z0-9_]+)` \|", section, flags=re.MULTILINE)


def test_every_setting_has_one_row_in_the_configuration_reference() -> None:
    rows = documented()
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert sorted(set(rows)) == sorted(expected), "docs/operations.md's settings table and Settings differ"
    assert len(rows) == len(set(rows)), "a setting has two rows"
