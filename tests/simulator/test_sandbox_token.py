"""The token endpoint answers as Azure AD does for DVSA's client-credentials flow."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import pytest

from tests.support.sandbox_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_PATH,
    VIN,
    api_headers,
    assert_azure_error,
    assert_dvsa_error,
    token_form,
)


async def test_issues_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.post(TOKEN_PATH, data=token_form())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 1199
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 32
    assert response.headers["Cache-Control"] == "no-store"


async def test_each_token_is_new(client: httpx.AsyncClient) -> None:
    first = await client.post(TOKEN_PATH, data=token_form())
    second = await client.post(TOKEN_PATH, data=token_form())
    assert first.json()["access_token"] != second.json()["access_token"]


async def test_azure_url_with_tenant_works_too(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/6c448d90-tenant{TOKEN_PATH}", data=token_form())
    assert response.status_code == 200


async def test_http_basic_credentials_are_refused(client: httpx.AsyncClient) -> None:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    response = await client.post(
        TOKEN_PATH,
        data=token_form(client_id=None, client_secret=None),
        headers={"Authorization": f"Basic {basic}"},
    )
    body = assert_azure_error(response, 400, "invalid_request")
    assert body["error_codes"] == [900144]
    assert "'client_id'" in body["error_description"]


@pytest.mark.parametrize(
    ("missing", "status", "error"),
    [
        ("grant_type", 400, "invalid_request"),
        ("client_id", 400, "invalid_request"),
        ("scope", 400, "invalid_request"),
        ("client_secret", 401, "invalid_client"),
    ],
)
async def test_missing_fields(client: httpx.AsyncClient, missing: str, status: int, error: str) -> None:
    response = await client.post(TOKEN_PATH, data=token_form(**{missing: None}))
    body = assert_azure_error(response, status, error)
    if status == 400:
        assert f"'{missing}'" in body["error_description"]


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"client_secret": "wrong-secret"}, 401, "invalid_client"),
        ({"scope": "api://other/.default"}, 400, "invalid_scope"),
    ],
)
async def test_wrong_values(
    client: httpx.AsyncClient, changes: dict[str, str], status: int, error: str
) -> None:
    response = await client.post(TOKEN_PATH, data=token_form(**changes))
    assert_azure_error(response, status, error)


async def test_a_json_body_is_not_a_form(client: httpx.AsyncClient) -> None:
    response = await client.post(TOKEN_PATH, json=token_form())
    assert_azure_error(response, 400, "invalid_request")


async def test_errors_never_echo_the_secret(client: httpx.AsyncClient) -> None:
    response = await client.post(TOKEN_PATH, data=token_form(scope="api://wrong"))
    assert CLIENT_SECRET not in response.text


@pytest.mark.parametrize("overrides", [{"token_ttl": 1}])
async def test_a_token_expires_after_its_ttl(client: httpx.AsyncClient, overrides: dict[str, Any]) -> None:
    before_issue = time.monotonic()
    issued = await client.post(TOKEN_PATH, data=token_form())
    assert issued.json()["expires_in"] == 1
    headers = api_headers(issued.json()["access_token"])
    response = await client.get(f"/recalls/vin/{VIN}", headers=headers)
    assert response.status_code == 404  # accepted: the vehicle just has no recalls
    while response.status_code != 401 and time.monotonic() - before_issue < 5:
        await asyncio.sleep(0.05)
        response = await client.get(f"/recalls/vin/{VIN}", headers=headers)
    assert_dvsa_error(response, 401, "RECALLS-UA-01")
    assert time.monotonic() - before_issue >= 1.0


async def test_token_requests_are_counted(client: httpx.AsyncClient) -> None:
    await client.post(TOKEN_PATH, data=token_form())
    await client.post(TOKEN_PATH, data=token_form(scope="wrong"))
    stats = (await client.get("/__admin/stats")).json()
    assert stats["token_requests"] == 2
    assert stats["tokens_issued"] == 1


async def test_token_endpoint_is_not_rate_limited(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(client.post(TOKEN_PATH, data=token_form()) for _ in range(40)))
    assert {response.status_code for response in responses} == {200}
