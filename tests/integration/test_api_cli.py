"""``recalls api keys create|list|revoke`` against a SQLite store: what an operator types and sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

pytestmark = pytest.mark.integration


def recalls(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_key_is_shown_once_listed_by_name_and_revoked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RECALLS_SQLITE_PATH", str(tmp_path / "store.db"))
    code, key, note = recalls("api", "keys", "create", "dealer portal")
    assert code == 0 and key.startswith("rk_") and "not shown again" in note

    code, listed, _ = recalls("api", "keys", "list", "--json")
    [shown] = json.loads(listed)
    assert (shown["name"], shown["revoked_at"]) == ("dealer portal", None)
    assert key.strip() not in listed and key.strip().split("_")[-1] not in listed
    assert key.split("_")[1] == shown["id"]

    code, out, _ = recalls("api", "keys", "revoke", shown["id"])
    assert code == 0 and "revoked" in out
    _, table, _ = recalls("api", "keys", "list")
    assert "dealer portal" in table and "revoked" in table


def test_bad_input_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECALLS_SQLITE_PATH", str(tmp_path / "store.db"))
    code, _, error = recalls("api", "keys", "revoke", "nosuchid")
    assert code == 2 and "key_id" in error
    code, _, error = recalls("api", "keys", "create", "  ")
    assert code == 2 and "name" in error
