"""``serve`` over TLS with a throwaway self-signed certificate, and a client that trusts only it.

Every answer over https carries ``Strict-Transport-Security``, errors included, and the dashboard's
session cookie is Secure; the same API over plain http sends no such header.
"""

from __future__ import annotations

import ssl
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from recalls.producers.batch_api.auth import SESSION_COOKIE
from recalls.producers.batch_api.server import Tls
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from tests.integration.conftest import base_settings
from tests.support.api_server import served
from tests.support.batch_api import LIGHT, delete_topology
from tests.support.certificates import self_signed

pytestmark = pytest.mark.integration

HSTS = "max-age=31536000"


async def test_every_answer_over_tls_carries_hsts_and_the_session_cookie_is_secure(
    prefix: str, store_path: Path, tmp_path: Path
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    certificate = self_signed(tmp_path)
    async with Database.connect(settings) as db:
        _, key = await ApiKeys(db).create("operators", scopes=("ops",))
    trusting = ssl.create_default_context(cafile=certificate.certfile)
    try:
        async with (
            served(settings, tls=Tls(certificate.certfile, certificate.keyfile)) as [url],
            httpx.AsyncClient(base_url=url, verify=trusting) as https,
        ):
            answers = [await https.get(path) for path in ("/healthz", "/openapi.json", "/no-such-page")]
            form = {"content-type": "application/x-www-form-urlencoded", "origin": url}
            signed_in = await https.post("/dashboard/sign-in", content=f"key={key}", headers=form)
            answers.append(signed_in)
    finally:
        await delete_topology(settings)

    assert url.startswith("https://127.0.0.1:")
    assert [answer.status_code for answer in answers] == [200, 200, 404, 303]
    for answer in answers:
        assert answer.headers["strict-transport-security"] == HSTS, answer.url
    cookie = SimpleCookie(signed_in.headers["set-cookie"])[SESSION_COOKIE]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "strict"


async def test_plain_http_sends_no_hsts(prefix: str, store_path: Path) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    try:
        async with served(settings) as [url], httpx.AsyncClient(base_url=url) as http:
            answer = await http.get("/healthz")
    finally:
        await delete_topology(settings)
    assert url.startswith("http://") and answer.status_code == 200
    assert "strict-transport-security" not in answer.headers
