"""The licence and the changelog agree with pyproject.toml: the MIT text, and the version released last."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# SHA-256 of the MIT licence's two paragraphs of terms (after its title and copyright line), with every
# run of whitespace made one space, so that rewrapping the file does not matter but any word does.
MIT_TERMS_SHA256 = "fe2a9817987f862eaced948f0468c7f51d2fedfc48c5c505b246a49a3870e9a5"
RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})$", flags=re.MULTILINE)
SECTION = re.compile(r"^## \[(?P<name>[^\]]+)\]", flags=re.MULTILINE)
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def project() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table


def test_the_licence_is_mit_and_pyproject_says_so() -> None:
    title, copyright_line, terms = (ROOT / "LICENSE").read_text().split("\n\n", 2)
    assert title == "MIT License"
    assert copyright_line == "Copyright (c) 2026 The recalls fleet contributors"
    digest = hashlib.sha256(" ".join(terms.split()).encode()).hexdigest()
    assert digest == MIT_TERMS_SHA256, "LICENSE's terms are not the MIT licence's, word for word"
    assert project()["license"] == "MIT"
    assert project()["license-files"] == ["LICENSE"]


def test_the_changelog_opens_with_unreleased_then_the_version_of_pyproject() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    sections = SECTION.findall(text)
    assert sections[0] == "Unreleased", "CHANGELOG.md keeps an [Unreleased] section first"
    newest = RELEASE.search(text)
    assert newest is not None, "CHANGELOG.md has no released version"
    assert newest["version"] == project()["version"], "CHANGELOG.md's newest release is not pyproject's"
    kinds = set(re.findall(r"^### (.+)$", text, flags=re.MULTILINE))
    assert kinds <= KINDS, f"not a Keep a Changelog kind of change: {sorted(kinds - KINDS)}"
