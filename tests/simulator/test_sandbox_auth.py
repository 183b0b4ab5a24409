"""Every API call needs a live bearer token (else 401) and the API usage key (else 403)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.sandbox_helpers import API_KEY, MANUFACTURER_REF, VIN, assert_dvsa_error, recall

# One call per endpoint; each would succeed or fail on its merits once authenticated.
CALLS: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/recalls", recall()),
    ("PUT", f"/recalls/vin/{VIN}?manufacturerCampaignReference={MANUFACTURER_REF}", {}),
    ("GET", f"/recalls/vin/{VIN}", None),
    ("DELETE", f"/recalls/vin/{VIN}?manufacturerCampaignReference={MANUFACTURER_REF}", None),
]


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-token-we-issued", "Token abc", "Basic YTpi"],
)
async def test_no_valid_bearer_token_is_401(
    client: httpx.AsyncClient, method: str, path: str, body: object, authorization: str | None
) -> None:
    headers = {"x-api-key": API_KEY}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await call(client, method, path, body, headers)
    assert_dvsa_error(response, 401, "RECALLS-UA-01")


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
@pytest.mark.parametrize("api_key", [None, "", "wrong-api-key-123", API_KEY + "x"])
async def test_no_valid_api_key_is_403(
    client: httpx.AsyncClient,
    token: str,
    method: str,
    path: str,
    body: object,
    api_key: str | None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    if api_key is not None:
        headers["x-api-key"] = api_key
    response = await call(client, method, path, body, headers)
    assert_dvsa_error(response, 403, "RECALLS-FB-01")


async def test_401_comes_before_403(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/recalls/vin/{VIN}", headers={"x-api-key": "wrong-key-123"})
    assert_dvsa_error(response, 401, "RECALLS-UA-01")


async def test_refused_calls_change_nothing(client: httpx.AsyncClient, token: str) -> None:
    await client.post("/recalls", json=recall(), headers={"Authorization": f"Bearer {token}"})
    await client.post("/recalls", json=recall(), headers={"x-api-key": API_KEY})
    assert (await client.get("/__admin/recalls")).json() == []
