"""The ``/__admin`` API: reset, recalls, requests, stats and faults, with their exact JSON shapes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from simulator.testing import DVSA_REF, MANUFACTURER_REF, START_DATE, TOKEN_PATH, VIN, VIN_16, recall

DEFAULT_FAULTS = {
    "error_rate": 0.0,
    "latency_ms": 0.0,
    "timeout_rate": 0.0,
    "hang_seconds": 30.0,
    "drop_rate": 0.0,
    "storm_seconds": 0.0,
    "token_outage_seconds": 0.0,
}
VERB_STATS_KEYS = {
    "count",
    "statuses",
    "throttled",
    "dropped",
    "max_in_window",
    "max_admitted_in_window",
}


async def test_recalls_lists_the_whole_state(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.post("/recalls", json=recall(), headers=auth)
    await client.post("/recalls", json=recall(vin=VIN_16, dvsaCampaignReference=None), headers=auth)
    await client.put(
        f"/recalls/vin/{VIN}",
        params={"dvsaCampaignReference": DVSA_REF},
        json={"rectificationDate": "2022-09-05", "repairStatus": "FIXED"},
        headers=auth,
    )
    response = await client.get("/__admin/recalls")
    assert response.status_code == 200
    assert response.json() == [
        {
            "vin": VIN,
            "manufacturerCampaignReference": MANUFACTURER_REF,
            "dvsaCampaignReference": DVSA_REF,
            "recallCampaignStartDate": START_DATE,
            "repairStatus": "FIXED",
            "rectificationDate": "2022-09-05",
        },
        {
            "vin": VIN_16,
            "manufacturerCampaignReference": MANUFACTURER_REF,
            "dvsaCampaignReference": None,
            "recallCampaignStartDate": START_DATE,
            "repairStatus": "NOT_FIXED",
            "rectificationDate": None,
        },
    ]


async def test_requests_is_the_journal(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    before = time.time()
    await client.post("/recalls", json=recall(), headers=auth)
    await client.get(f"/recalls/vin/{VIN}", params={"dvsaCampaignReference": DVSA_REF}, headers=auth)
    await client.delete(f"/recalls/vin/{VIN}", headers=auth)
    journal = (await client.get("/__admin/requests")).json()
    assert [(entry["verb"], entry["method"], entry["status"]) for entry in journal] == [
        ("token", "POST", 200),
        ("create", "POST", 201),
        ("get", "GET", 200),
        ("delete", "DELETE", 400),
    ]
    get = journal[2]
    assert set(get) == {"verb", "method", "path", "query", "status", "fault", "arrival"}
    assert get["path"] == f"/recalls/vin/{VIN}"
    assert get["query"] == "dvsaCampaignReference=R/2022/123"
    assert get["fault"] is None
    assert before - 1 <= journal[0]["arrival"] <= get["arrival"] <= time.time() + 1
    assert journal[0]["path"] == TOKEN_PATH


async def test_requests_limit_gives_the_newest(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for _ in range(3):
        await client.get(f"/recalls/vin/{VIN}", headers=auth)
    newest = (await client.get("/__admin/requests", params={"limit": 2})).json()
    assert [entry["verb"] for entry in newest] == ["get", "get"]
    assert len((await client.get("/__admin/requests", params={"limit": 99})).json()) == 4


@pytest.mark.parametrize("limit", ["0", "-1", "many", "1.5"])
async def test_requests_limit_must_be_positive(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/__admin/requests", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"].startswith("limit:")


async def test_admin_calls_are_not_journaled(client: httpx.AsyncClient) -> None:
    await client.get("/__admin/stats")
    assert (await client.get("/__admin/requests")).json() == []


async def test_stats_shape(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.post("/recalls", json=recall(), headers=auth)
    await client.post("/recalls", json=recall(), headers=auth)
    stats = (await client.get("/__admin/stats")).json()
    assert set(stats) == {"create", "fix", "delete", "get", "token_requests", "tokens_issued"}
    assert stats["create"] == {
        "count": 2,
        "statuses": {"201": 1, "409": 1},
        "throttled": 0,
        "dropped": 0,
        "max_in_window": 2,
        "max_admitted_in_window": 2,
    }
    for verb in ("fix", "delete", "get"):
        assert set(stats[verb]) == VERB_STATS_KEYS
        assert stats[verb]["count"] == 0
    assert (stats["token_requests"], stats["tokens_issued"]) == (1, 1)


async def test_faults_default_and_partial_update(client: httpx.AsyncClient) -> None:
    assert (await client.get("/__admin/faults")).json() == DEFAULT_FAULTS
    response = await client.put("/__admin/faults", json={"error_rate": 0.25, "latency_ms": 5})
    assert response.status_code == 200
    expected = DEFAULT_FAULTS | {"error_rate": 0.25, "latency_ms": 5.0}
    assert response.json() == expected
    assert (await client.get("/__admin/faults")).json() == expected
    response = await client.put("/__admin/faults", json={"hang_seconds": 2})
    assert response.json() == expected | {"hang_seconds": 2.0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"timeout_rate": "half"}, "timeout_rate"),
        ({"latency_ms": None}, "latency_ms"),
        ({"hang_seconds": True}, "hang_seconds"),
        ({"storm_seconds": -5}, "storm_seconds"),
        ({"token_outage_seconds": [1]}, "token_outage_seconds"),
        ({"error_rate": 0.5, "chaos": 1}, "chaos"),
    ],
)
async def test_faults_validation_names_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.put("/__admin/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}: ")
    assert (await client.get("/__admin/faults")).json() == DEFAULT_FAULTS  # nothing half-applied


@pytest.mark.parametrize("content", [b"[1]", b"not json", b""])
async def test_faults_body_must_be_an_object(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.put("/__admin/faults", content=content)
    assert response.status_code == 400
    assert response.json()["error"].startswith("body: ")


async def test_reset_forgets_everything_but_issued_tokens(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.post("/recalls", json=recall(), headers=auth)
    await client.put("/__admin/faults", json={"latency_ms": 10, "storm_seconds": 60})
    response = await client.post("/__admin/reset")
    assert response.status_code == 200
    assert (await client.get("/__admin/recalls")).json() == []
    assert (await client.get("/__admin/requests")).json() == []
    assert (await client.get("/__admin/faults")).json() == DEFAULT_FAULTS
    stats = (await client.get("/__admin/stats")).json()
    assert stats["create"]["count"] == 0
    assert stats["token_requests"] == 0
    # The token issued before the reset still works, and the old recall is gone.
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 404


async def test_reset_also_clears_the_rate_windows(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await asyncio.gather(*(client.get(f"/recalls/vin/{VIN}", headers=auth) for _ in range(25)))
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 429
    await client.post("/__admin/reset")
    assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 404
