"""``recalls api keys create|list|revoke`` against a SQLite store, and ``recalls api``'s TLS options:
what an operator types and sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.support.certificates import self_signed

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


def test_half_a_tls_pair_or_a_mismatched_one_is_refused_before_anything_starts(tmp_path: Path) -> None:
    first, second = self_signed(tmp_path), self_signed(tmp_path)
    code, _, error = recalls("api", "--ssl-certfile", str(first.certfile))
    assert (code, error) == (
        2,
        "error: --ssl-keyfile: required with --ssl-certfile (that certificate's private key)\n",
    )
    code, _, error = recalls("api", "--ssl-keyfile", str(first.keyfile))
    assert (code, error) == (
        2,
        "error: --ssl-certfile: required with --ssl-keyfile (the certificate of that key)\n",
    )
    code, _, error = recalls(
        "api", "--ssl-certfile", str(first.certfile), "--ssl-keyfile", str(second.keyfile)
    )
    assert (code, error) == (
        2,
        "error: --ssl-certfile, --ssl-keyfile: not a PEM certificate and its unencrypted private key "
        "(KEY_VALUES_MISMATCH)\n",
    )
