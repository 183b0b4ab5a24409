"""The ``/__admin`` API: reset, recalls (and changes to them behind the fleet's back), requests, stats and
faults, with their exact JSON shapes.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support.sandbox_helpers import (
    DVSA_REF,
    MANUFACTURER_REF,
    START_DATE,
    TOKEN_PATH,
    VIN,
    VIN_16,
    recall,
)

DEFAULT_FAULTS = {
    "error_rate": 0.0,
    "latency_ms": 0.0,
    "timeout_rate": 0.0,
    "hang_seconds": 30.0,
    "drop_rate": 0.0,
    "storm_seconds": 0.0,
    "token_outage_seconds": 0.0,
}
BY_MANUFACTURER = {"manufacturerCampaignReference": MANUFACTURER_REF}
BY_DVSA = {"dvsaCampaignReference": DVSA_REF}
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


async def seeded(client: httpx.AsyncClient, *items: dict[str, object]) -> None:
    response = await client.post("/__admin/recalls", json=list(items))
    assert response.status_code == 201, response.text


class TestRemove:
    @pytest.mark.parametrize("query", [BY_MANUFACTURER, BY_DVSA])
    async def test_removes_even_a_fixed_recall(
        self, client: httpx.AsyncClient, auth: dict[str, str], query: dict[str, str]
    ) -> None:
        await seeded(client, recall(repairStatus="FIXED", rectificationDate="2022-09-05"))
        response = await client.delete(f"/__admin/recalls/{VIN.lower()}", params=query)
        assert response.status_code == 204
        assert response.content == b""
        assert (await client.get("/__admin/recalls")).json() == []
        assert (await client.get(f"/recalls/vin/{VIN}", headers=auth)).status_code == 404

    async def test_only_the_addressed_recall_goes(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await seeded(
            client, recall(), recall(manufacturerCampaignReference="OTHER-1", dvsaCampaignReference=None)
        )
        assert (await client.delete(f"/__admin/recalls/{VIN}", params=BY_MANUFACTURER)).status_code == 204
        recalls = (await client.get(f"/recalls/vin/{VIN}", headers=auth)).json()["recalls"]
        assert [item["manufacturerCampaignReference"] for item in recalls] == ["OTHER-1"]

    @pytest.mark.parametrize(
        ("vin", "query"),
        [
            (VIN_16, BY_MANUFACTURER),
            (VIN, {"manufacturerCampaignReference": "NOPE"}),
            (VIN, {"dvsaCampaignReference": "R/2099/999"}),
        ],
    )
    async def test_unknown_recall_is_404(
        self, client: httpx.AsyncClient, vin: str, query: dict[str, str]
    ) -> None:
        await seeded(client, recall())
        response = await client.delete(f"/__admin/recalls/{vin}", params=query)
        assert response.status_code == 404
        assert response.json()["error"].startswith(f"No recall found for VIN {vin}")
        assert len((await client.get("/__admin/recalls")).json()) == 1

    async def test_a_reference_is_required(self, client: httpx.AsyncClient) -> None:
        await seeded(client, recall())
        response = await client.delete(f"/__admin/recalls/{VIN}")
        assert response.status_code == 400
        assert response.json()["error"].startswith("manufacturerCampaignReference: ")
        assert len((await client.get("/__admin/recalls")).json()) == 1


class TestSetStatus:
    async def test_fixes_with_none_of_dvsas_rules(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await seeded(client, recall())
        before_start = {"repairStatus": "FIXED", "rectificationDate": "2000-01-01"}  # DVSA would refuse
        for _ in range(2):  # and DVSA would refuse a second fix
            response = await client.patch(
                f"/__admin/recalls/{VIN}", params=BY_MANUFACTURER, json=before_start
            )
            assert response.status_code == 200
        assert response.json() == {
            "vin": VIN,
            "manufacturerCampaignReference": MANUFACTURER_REF,
            "dvsaCampaignReference": DVSA_REF,
            "recallCampaignStartDate": START_DATE,
            "repairStatus": "FIXED",
            "rectificationDate": "2000-01-01",
        }
        [seen] = (await client.get(f"/recalls/vin/{VIN}", headers=auth)).json()["recalls"]
        assert seen["repairStatus"] == "FIXED"

    async def test_fixed_without_a_date(self, client: httpx.AsyncClient) -> None:
        await seeded(client, recall())
        response = await client.patch(
            f"/__admin/recalls/{VIN}", params=BY_DVSA, json={"repairStatus": "FIXED"}
        )
        assert response.status_code == 200
        assert (response.json()["repairStatus"], response.json()["rectificationDate"]) == ("FIXED", None)

    async def test_reopening_clears_the_date(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        await seeded(client, recall(repairStatus="FIXED", rectificationDate="2022-09-05"))
        body = {"repairStatus": "NOT_FIXED", "rectificationDate": "2022-09-06"}
        response = await client.patch(f"/__admin/recalls/{VIN}", params=BY_DVSA, json=body)
        assert response.status_code == 200
        assert (response.json()["repairStatus"], response.json()["rectificationDate"]) == ("NOT_FIXED", None)
        [seen] = (await client.get(f"/recalls/vin/{VIN}", headers=auth)).json()["recalls"]
        assert seen["repairStatus"] == "NOT_FIXED"

    async def test_unknown_recall_is_404(self, client: httpx.AsyncClient) -> None:
        await seeded(client, recall())
        missing = {"manufacturerCampaignReference": "NOPE"}
        response = await client.patch(
            f"/__admin/recalls/{VIN}", params=missing, json={"repairStatus": "FIXED"}
        )
        assert response.status_code == 404
        assert "NOPE" in response.json()["error"]

    @pytest.mark.parametrize(
        ("query", "content", "field"),
        [
            ({}, b'{"repairStatus": "FIXED"}', "manufacturerCampaignReference"),
            (BY_MANUFACTURER, b"not json", "body"),
            (BY_MANUFACTURER, b'["FIXED"]', "body"),
            (BY_MANUFACTURER, b"", "body"),
            (BY_MANUFACTURER, b"{}", "repairStatus"),
            (BY_MANUFACTURER, b'{"repairStatus": "BROKEN"}', "repairStatus"),
            (BY_MANUFACTURER, b'{"repairStatus": ["FIXED"]}', "repairStatus"),
            (
                BY_MANUFACTURER,
                b'{"repairStatus": "FIXED", "rectificationDate": "2022-02-30"}',
                "rectificationDate",
            ),
            (
                BY_MANUFACTURER,
                b'{"repairStatus": "FIXED", "rectificationDate": "5 Sep 2022"}',
                "rectificationDate",
            ),
            (
                BY_MANUFACTURER,
                b'{"repairStatus": "FIXED", "rectificationDate": 20220905}',
                "rectificationDate",
            ),
            (
                BY_MANUFACTURER,
                b'{"repairStatus": "FIXED", "rectificationdate": "2022-09-05"}',
                "rectificationdate",
            ),
        ],
    )
    async def test_bad_input_is_400_naming_the_field(
        self, client: httpx.AsyncClient, query: dict[str, str], content: bytes, field: str
    ) -> None:
        await seeded(client, recall())
        response = await client.patch(f"/__admin/recalls/{VIN}", params=query, content=content)
        assert response.status_code == 400
        assert response.json()["error"].startswith(f"{field}: ")
        [held] = (await client.get("/__admin/recalls")).json()
        assert held["repairStatus"] == "NOT_FIXED"


async def test_out_of_band_changes_are_neither_journaled_nor_rate_limited(client: httpx.AsyncClient) -> None:
    items = [recall(vin=f"SEED{n:013d}") for n in range(30)]  # beyond the rate limit of 25 per second
    await seeded(client, *items)
    fixed = {"repairStatus": "FIXED"}
    for item in items:
        patched = await client.patch(f"/__admin/recalls/{item['vin']}", params=BY_MANUFACTURER, json=fixed)
        assert patched.status_code == 200
        removed = await client.delete(f"/__admin/recalls/{item['vin']}", params=BY_MANUFACTURER)
        assert removed.status_code == 204
    assert (await client.get("/__admin/requests")).json() == []
    assert (await client.get("/__admin/recalls")).json() == []
