"""Who gets into the batch API and its dashboard, over real HTTP: keys, their scopes, sign-in sessions.

Scopes: a customer's key (``batch`` only, the default) meets 403 on the dashboard's page and its feed,
which show the whole fleet; an operator's key (``ops`` only) meets 403 on the batch routes.  A refusal
names what is missing and never holds the key.

The key in the batch API's URL still works, but every answer to it says it is deprecated (RFC 9745's
``Deprecation`` and a ``Link`` to the API's description); the header, the documented way, does not.

Sign-in: a key in the dashboard's URL is refused and makes no session.  A sign-in from the dashboard's
own origin with an ``ops`` key answers a session cookie (HttpOnly, SameSite=Strict, not the key) that
the page and the feed accept alone, that reads the batch API but submits nothing, and that ends at
sign-out and with its key.  A sign-in from elsewhere, without ``ops``, or with a bad form makes no
session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from recalls.producers.batch_api.auth import SESSION_COOKIE
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from recalls.shared.store.sessions import LIFETIME
from recalls.shared.store.tables import sessions
from tests.integration.conftest import base_settings
from tests.support.batch_api import API, LIGHT, Api, assert_error, delete_topology, running_api
from tests.support.commands import vin

pytestmark = pytest.mark.integration

FORM = "application/x-www-form-urlencoded"
DASHBOARD = ("/dashboard", "/dashboard/data")


@pytest.fixture
async def api(prefix: str, store_path: Path) -> AsyncIterator[Api]:
    """The API app on light settings, served, with a customer's key (``batch`` only)."""
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    try:
        async with running_api(settings) as running:
            yield running
    finally:
        await delete_topology(settings)


async def operator_key(api: Api, scopes: tuple[str, ...] = ("batch", "ops")) -> str:
    _, key = await ApiKeys(api.db).create("operators", scopes=scopes)
    return key


async def as_key(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    key: str,
    *,
    json: object = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """``method path`` with ``key`` in the ``x-api-key`` header."""
    return await http.request(method, path, headers={"x-api-key": key}, json=json, params=params)


def own_origin(http: httpx.AsyncClient) -> str:
    return str(http.base_url).rstrip("/")


async def sign_in(
    http: httpx.AsyncClient, body: str | bytes, *, origin: str | None = "", content_type: str = FORM
) -> httpx.Response:
    """POST ``body`` to the sign-in, from ``origin`` (``""``: the dashboard's own; ``None``: none said)."""
    headers = {"content-type": content_type}
    if origin is not None:
        headers["origin"] = origin or own_origin(http)
    return await http.post("/dashboard/sign-in", content=body, headers=headers)


async def session_count(db: Database) -> int:
    async with db.reading() as connection:
        return int((await connection.execute(select(func.count()).select_from(sessions))).scalar_one())


def with_session(token: str) -> dict[str, str]:
    return {"cookie": f"{SESSION_COOKIE}={token}"}


# --- scopes ---------------------------------------------------------------------------------------------


async def test_a_key_without_ops_meets_403_on_the_dashboard_page_and_feed(api: Api) -> None:
    operator = await operator_key(api, scopes=("ops",))
    refused = [await as_key(api.http, "GET", path, api.key) for path in DASHBOARD]
    allowed = [await as_key(api.http, "GET", path, operator) for path in DASHBOARD]
    for answer in refused:
        assert_error(answer, 403, "INSUFFICIENT_SCOPE", "key: lacks the ops scope", "--scope ops")
        assert api.key not in answer.text
    assert [answer.status_code for answer in allowed] == [200, 200]


async def test_a_key_without_batch_meets_403_on_the_batch_routes(api: Api) -> None:
    operator = await operator_key(api, scopes=("ops",))
    batch_id = (await api.submit({"vins": [vin(1)]})).json()["data"]["batchId"]
    submit = await as_key(api.http, "POST", f"{API}/submit", operator, json={"vins": [vin(2)]})
    status = await as_key(api.http, "GET", f"{API}/status", operator, params={"batchId": batch_id})
    for answer in (submit, status):
        assert_error(answer, 403, "INSUFFICIENT_SCOPE", "key: lacks the batch scope", "--scope batch")
        assert operator not in answer.text


# --- the key in a URL -----------------------------------------------------------------------------------


async def test_a_key_in_the_batch_apis_url_still_works_but_every_answer_says_it_is_deprecated(
    api: Api,
) -> None:
    in_query = {"key": api.key}
    accepted = await api.http.post(f"{API}/submit", json={"vins": [vin(1)]}, params=in_query)
    batch_id = accepted.json()["data"]["batchId"]
    polled = await api.http.get(f"{API}/status", params={**in_query, "batchId": batch_id})
    missing = await api.http.get(f"{API}/status", params={**in_query, "batchId": "no-such-batch"})
    refused = await api.http.get(f"{API}/status", params={"key": "", "batchId": batch_id})
    in_header = await as_key(api.http, "GET", f"{API}/status", api.key, params={"batchId": batch_id})

    assert (accepted.status_code, polled.status_code, missing.status_code) == (202, 200, 404)
    assert_error(refused, 401, "MISSING_API_KEY")
    for answer in (accepted, polled, missing, refused):
        assert answer.headers["deprecation"] == "@1796601600"  # 2026-12-07, as an RFC 9651 date
        assert answer.headers["link"] == '</openapi.json>; rel="deprecation"; type="application/json"'
    assert in_header.status_code == 200
    assert "deprecation" not in in_header.headers and "link" not in in_header.headers
    described = (await api.http.get("/openapi.json")).json()["components"]["securitySchemes"]
    assert described["key"]["description"].startswith("Deprecated")


# --- sign-in --------------------------------------------------------------------------------------------


async def test_a_key_in_the_dashboards_url_is_refused_and_makes_no_session(api: Api) -> None:
    key = await operator_key(api)
    answers = [await api.http.get(path, params={"key": key}) for path in (*DASHBOARD, "/dashboard/sign-in")]
    answers.append(
        await api.http.post(
            "/dashboard/sign-in",
            params={"key": key},
            content=f"key={key}",
            headers={"content-type": FORM, "origin": own_origin(api.http)},
        )
    )
    for answer in answers:
        assert_error(answer, 400, "API_KEY_IN_URL", "key: never accepted in this URL", "/dashboard/sign-in")
        assert key not in answer.text and "set-cookie" not in answer.headers
    assert await session_count(api.db) == 0


async def test_a_sign_in_answers_a_strict_http_only_session_that_the_dashboard_takes_alone(
    api: Api,
) -> None:
    key = await operator_key(api)
    signed_in = await sign_in(api.http, f"key={key}")
    token = SimpleCookie(signed_in.headers["set-cookie"])[SESSION_COOKIE].value
    async with httpx.AsyncClient(base_url=api.http.base_url, headers=with_session(token)) as browser:
        page = await browser.get("/dashboard")
        feed = await browser.get("/dashboard/data")
        submitted = await browser.post(f"{API}/submit", json={"vins": [vin(1)]})
        signed_out = await browser.post("/dashboard/sign-out", headers={"origin": own_origin(browser)})
        after = await browser.get("/dashboard/data")
    again = await sign_in(api.http, f"key={key}")
    token = SimpleCookie(again.headers["set-cookie"])[SESSION_COOKIE].value
    await ApiKeys(api.db).revoke(key.split("_")[1])
    revoked = await api.http.get("/dashboard/data", headers=with_session(token))

    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "../dashboard"
    cookie = SimpleCookie(signed_in.headers["set-cookie"])[SESSION_COOKIE]
    assert (cookie["httponly"], cookie["samesite"], cookie["path"]) == (True, "strict", "/")
    assert not cookie["secure"]  # plain http here; over https it is Secure (test_api_tls)
    assert int(cookie["max-age"]) == LIFETIME.total_seconds()
    assert key not in str(signed_in.headers) and key not in cookie.value
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert feed.status_code == 200 and feed.json()["batches"] == []
    assert_error(submitted, 401, "MISSING_API_KEY")  # a session reads; writes need the key itself
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "sign-in")
    assert "max-age=0" in signed_out.headers["set-cookie"].lower()
    assert_error(after, 401, "SESSION_ENDED", "sign in again at /dashboard/sign-in")
    assert_error(revoked, 401, "SESSION_ENDED")


async def test_a_sign_in_from_elsewhere_without_ops_or_with_a_bad_form_makes_no_session(api: Api) -> None:
    key = await operator_key(api)
    customer = api.key
    http = api.http
    answers = {
        "no origin": await sign_in(http, f"key={key}", origin=None),
        "another origin": await sign_in(http, f"key={key}", origin="https://elsewhere.example"),
        "no ops": await sign_in(http, f"key={customer}"),
        "unknown key": await sign_in(http, f"key=rk_00000000_{'A' * 32}"),
        "json": await sign_in(http, f'{{"key": "{key}"}}', content_type="application/json"),
        "too large": await sign_in(http, f"key={key}&pad={'x' * 1024}"),
        "no key": await sign_in(http, "key="),
        "two keys": await sign_in(http, f"key={key}&key={key}"),
        "not a form": await sign_in(http, f"key={key}&pad"),
        "not ascii": await sign_in(http, f"key={key}é".encode()),
    }
    expected = {
        "no origin": (403, "CROSS_ORIGIN_REQUEST", "origin: must be this dashboard's own page"),
        "another origin": (403, "CROSS_ORIGIN_REQUEST", "origin:"),
        "no ops": (403, "INSUFFICIENT_SCOPE", "key: lacks the ops scope"),
        "unknown key": (401, "USER_NOT_FOUND", "key: unknown or revoked"),
        "json": (400, "INVALID_SIGN_IN", f"body: must be a form ({FORM})"),
        "too large": (413, "INVALID_SIGN_IN", "body: larger than 1024 bytes"),
        "no key": (401, "MISSING_API_KEY", "key: required"),
        "two keys": (401, "MISSING_API_KEY", "key: required, once"),
        "not a form": (400, "INVALID_SIGN_IN", "body: not a form"),
        "not ascii": (400, "INVALID_SIGN_IN", "body: not a form"),
    }
    for case, (status, name, fragment) in expected.items():
        answer = answers[case]
        assert_error(answer, status, name, fragment)
        assert "set-cookie" not in answer.headers, case
        assert key not in answer.text and customer not in answer.text, case
    assert await session_count(api.db) == 0
    without_session = await http.get("/dashboard")
    assert (without_session.status_code, without_session.headers["location"]) == (303, "dashboard/sign-in")
