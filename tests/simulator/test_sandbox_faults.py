"""Injected faults (errors, drops, hangs, latency, 429 storms, token outages), at start or at run time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from recalls.sandbox.config import SandboxConfig
from recalls.sandbox.faults import FaultSettings
from recalls.sandbox.server import running_sandbox
from tests.support.sandbox_helpers import TOKEN_PATH, VIN, assert_azure_error, recall, token_form


async def set_faults(client: httpx.AsyncClient, **faults: float) -> dict[str, Any]:
    response = await client.put("/__admin/faults", json=faults)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    recalls: list[dict[str, Any]] = (await client.get("/__admin/recalls")).json()
    return recalls


async def test_error_rate_one_answers_every_call_500_or_503_without_applying_it(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await set_faults(client, error_rate=1)
    responses = [await client.post("/recalls", json=recall(), headers=auth) for _ in range(20)]
    assert {response.status_code for response in responses} == {500, 503}
    for response in responses:
        assert set(response.json()) == {"message"}
    assert await stored(client) == []
    journal = (await client.get("/__admin/requests")).json()
    assert {entry["fault"] for entry in journal if entry["verb"] == "create"} == {
        "error500",
        "error503",
    }


@pytest.mark.parametrize("overrides", [{"faults": FaultSettings(error_rate=1)}])
async def test_faults_can_be_set_at_start(
    client: httpx.AsyncClient, auth: dict[str, str], overrides: dict[str, Any]
) -> None:
    response = await client.get(f"/recalls/vin/{VIN}", headers=auth)
    assert response.status_code in (500, 503)
    assert (await client.get("/__admin/faults")).json()["error_rate"] == 1.0


async def test_drop_rate_one_closes_the_connection_without_an_answer(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await set_faults(client, drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/recalls", json=recall(), headers=auth)
    assert await stored(client) == []
    [entry] = (await client.get("/__admin/requests")).json()[1:]  # after the token request
    assert entry["status"] is None
    assert entry["fault"] == "drop"
    assert (await client.get("/__admin/stats")).json()["create"]["dropped"] == 1


async def test_timeout_applies_the_change_but_the_client_never_hears(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await set_faults(client, timeout_rate=1, hang_seconds=1.5)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/recalls", json=recall(), headers=auth, timeout=0.3)
    [applied] = await stored(client)
    assert applied["vin"] == VIN
    [entry] = (await client.get("/__admin/requests")).json()[1:]
    assert (entry["status"], entry["fault"]) == (201, "timeout")


async def test_a_patient_client_gets_the_answer_after_the_hang(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await set_faults(client, timeout_rate=1, hang_seconds=0.3)
    started = time.monotonic()
    response = await client.post("/recalls", json=recall(), headers=auth)
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.3


async def test_latency_delays_every_call_without_blocking_the_others(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await set_faults(client, latency_ms=200)
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get(f"/recalls/vin/{VIN}", headers=auth) for _ in range(10)))
    elapsed = time.monotonic() - started
    assert {response.status_code for response in responses} == {404}
    assert 0.2 <= elapsed < 1.0  # ten calls of 200 ms each, side by side


async def test_a_storm_answers_429_until_it_ends(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    faults = await set_faults(client, storm_seconds=30)
    assert 29 < faults["storm_seconds"] <= 30
    response = await client.post("/recalls", json=recall(), headers=auth)
    assert response.status_code == 429
    assert response.json() == {"message": "Rate limit exceeded"}
    assert 29 <= int(response.headers["Retry-After"]) <= 30
    assert await stored(client) == []
    await set_faults(client, storm_seconds=0)
    assert (await client.post("/recalls", json=recall(), headers=auth)).status_code == 201
    stats = (await client.get("/__admin/stats")).json()["create"]
    assert stats["throttled"] == 1
    assert stats["max_admitted_in_window"] == 1


async def test_a_storm_ends_by_itself(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await set_faults(client, storm_seconds=0.3)
    response = await client.get(f"/recalls/vin/{VIN}", headers=auth)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    deadline = time.monotonic() + 3
    while response.status_code == 429 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        response = await client.get(f"/recalls/vin/{VIN}", headers=auth)
    assert response.status_code == 404
    assert (await client.get("/__admin/faults")).json()["storm_seconds"] == 0


async def test_a_token_outage_answers_503_but_issued_tokens_still_work(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await set_faults(client, token_outage_seconds=30)
    response = await client.post(TOKEN_PATH, data=token_form())
    assert_azure_error(response, 503, "temporarily_unavailable")
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 404
    await set_faults(client, token_outage_seconds=0)
    assert (await client.post(TOKEN_PATH, data=token_form())).status_code == 200


async def test_faults_spare_the_token_endpoint_and_the_admin_api(
    client: httpx.AsyncClient,
) -> None:
    await set_faults(client, error_rate=1, drop_rate=1)
    assert (await client.post(TOKEN_PATH, data=token_form())).status_code == 200
    assert (await client.get("/__admin/recalls")).status_code == 200


async def test_same_seed_same_fates(config: SandboxConfig) -> None:
    async def fates() -> list[int]:
        seeded = config.replace(faults=FaultSettings(error_rate=0.5), seed=99)
        async with running_sandbox(seeded) as running, httpx.AsyncClient(base_url=running.url) as http:
            token = (await http.post(TOKEN_PATH, data=token_form())).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "x-api-key": config.api_key}
            return [(await http.get(f"/recalls/vin/{VIN}", headers=headers)).status_code for _ in range(20)]

    first = await fates()
    assert first == await fates()
    assert 404 in first  # some calls get through...
    assert {500, 503} & set(first)  # ...and some fail, in the same order both times
