"""DVSA's per-verb rate limit, strictly: no more than ``rate_limit`` of one verb in any one second."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.sandbox_helpers import API_KEY, VIN, recall


def numbered_vin(index: int) -> str:
    return f"WAUZZZF49HA{index:06d}"


async def test_a_burst_admits_exactly_the_limit(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    burst = 31
    responses = await asyncio.gather(
        *(
            client.post(
                "/recalls", json=recall(vin=numbered_vin(i), dvsaCampaignReference=None), headers=auth
            )
            for i in range(burst)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 25 + [429] * (burst - 25)
    for response in responses:
        if response.status_code == 429:
            assert response.json() == {"message": "Rate limit exceeded"}
            retry_after = response.headers["Retry-After"]
            assert retry_after.isdigit() and int(retry_after) >= 1
    assert len((await client.get("/__admin/recalls")).json()) == 25
    create = (await client.get("/__admin/stats")).json()["create"]
    assert create["count"] == burst
    assert create["throttled"] == burst - 25
    assert create["max_in_window"] == burst
    assert create["max_admitted_in_window"] == 25
    assert create["statuses"] == {"201": 25, "429": burst - 25}


async def test_each_verb_has_its_own_budget(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    gets = await asyncio.gather(*(client.get(f"/recalls/vin/{VIN}", headers=auth) for _ in range(25)))
    assert {response.status_code for response in gets} == {404}  # admitted: nothing there yet
    assert (await client.post("/recalls", json=recall(), headers=auth)).status_code == 201
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 429


@pytest.mark.parametrize("overrides", [{"rate_limit": 3}])
async def test_unauthenticated_calls_spend_the_budget_too(
    client: httpx.AsyncClient, auth: dict[str, str], overrides: dict[str, Any]
) -> None:
    # The limit is applied at arrival, before authentication, as an API gateway does.
    for _ in range(3):
        response = await client.get(f"/recalls/vin/{VIN}", headers={"x-api-key": API_KEY})
        assert response.status_code == 401
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 429


@pytest.mark.parametrize("overrides", [{"rate_limit": 2}])
async def test_admitted_again_after_retry_after(
    client: httpx.AsyncClient, auth: dict[str, str], overrides: dict[str, Any]
) -> None:
    for _ in range(2):
        await client.get(f"/recalls/vin/{VIN}", headers=auth)
    refused = await client.get(f"/recalls/vin/{VIN}", headers=auth)
    assert refused.status_code == 429
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 404


async def test_admin_api_is_not_rate_limited(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(client.get("/__admin/stats") for _ in range(40)))
    assert {response.status_code for response in responses} == {200}
