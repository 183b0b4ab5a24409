"""Fixtures for the unit tests: none of the machine's RECALLS_* variables or .env files reaches them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RECALLS_* variable is set, and the working directory is the test's own (no stray .env)."""
    for name in list(os.environ):
        if name.startswith("RECALLS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
