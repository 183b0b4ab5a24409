"""``recalls api keys ...`` against a SQLite store, and ``recalls api``'s TLS options: what an operator
types and sees."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from recalls.cli.main import cli
from recalls.shared.settings import load_settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from tests.support.certificates import self_signed

pytestmark = pytest.mark.integration


def recalls(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_key_is_shown_once_listed_by_name_and_revoked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RECALLS_SQLITE_PATH", str(tmp_path / "store.db"))
    code, out, note = recalls("api", "keys", "create", "dealer portal")
    key = out.strip()  # the key alone on stdout: KEY=$(recalls api keys create NAME)
    [secret] = re.findall(r"webhook secret \(signs this key's batch webhooks\): (whsec_\S+)$", note, re.M)
    assert code == 0 and key.startswith("rk_") and out == f"{key}\n"
    assert "scopes batch" in note and "neither is shown again" in note

    code, listed, _ = recalls("api", "keys", "list", "--json")
    [shown] = json.loads(listed)
    assert (shown["name"], shown["scopes"], shown["revoked_at"]) == ("dealer portal", ["batch"], None)
    for secret_part in (key, key.split("_")[-1], secret):
        assert secret_part not in listed
    assert key.split("_")[1] == shown["id"]
    assert asyncio.run(stored_webhook_secret(shown["id"])) == secret

    code, out, _ = recalls("api", "keys", "revoke", shown["id"])
    assert code == 0 and "revoked" in out
    _, table, _ = recalls("api", "keys", "list")
    assert "dealer portal" in table and "revoked" in table


async def stored_webhook_secret(key_id: str) -> str | None:
    async with Database.connect(load_settings()) as db:
        return await ApiKeys(db).webhook_secret(key_id)


def test_a_key_gets_the_scopes_asked_for_and_its_webhook_secret_rotates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RECALLS_SQLITE_PATH", str(tmp_path / "store.db"))
    code, out, _ = recalls(
        "api", "keys", "create", "operators", "--scope", "ops", "--scope", "batch", "--json"
    )
    created = json.loads(out)
    key_id, secret = created["id"], created["webhook_secret"]
    assert code == 0 and created["key"].startswith(f"rk_{key_id}_") and secret.startswith("whsec_")
    assert (created["name"], created["scopes"]) == ("operators", ["batch", "ops"])
    _, table, _ = recalls("api", "keys", "list")
    assert f"{key_id}  operators  scopes batch,ops  created " in table

    code, rotated, note = recalls("api", "keys", "rotate-webhook-secret", key_id)
    assert code == 0 and "not shown again" in note
    assert rotated.startswith("whsec_") and rotated.strip() != secret
    assert asyncio.run(stored_webhook_secret(key_id)) == rotated.strip()

    code, _, error = recalls("api", "keys", "rotate-webhook-secret", "nosuchid")
    assert (code, error) == (2, "error: key_id: no key 'nosuchid' (recalls api keys list shows them)\n")
    code, _, error = recalls("api", "keys", "create", "admins", "--scope", "admin")
    assert code == 2 and "--scope" in error and "'batch', 'ops'" in error


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
