"""``POST /__admin/recalls``: seed recalls straight into the state, with no token and no rate limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.sandbox_helpers import DVSA_REF, MANUFACTURER_REF, START_DATE, VIN, VIN_16


def seed(**changes: Any) -> dict[str, Any]:
    """A valid seed item; a change to ``None`` leaves that field out."""
    item: dict[str, Any] = {
        "vin": VIN,
        "manufacturerCampaignReference": MANUFACTURER_REF,
        "dvsaCampaignReference": DVSA_REF,
        "recallCampaignStartDate": START_DATE,
    }
    item.update(changes)
    return {name: value for name, value in item.items() if value is not None}


async def test_seeded_recalls_are_held_and_served(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    items = [
        seed(),
        seed(vin=VIN_16.lower(), dvsaCampaignReference=None),
        seed(manufacturerCampaignReference="OTHER", dvsaCampaignReference=None, repairStatus="FIXED"),
    ]
    response = await client.post("/__admin/recalls", json=items)
    assert response.status_code == 201
    assert response.json() == {"seeded": 3}
    held = {
        (r["vin"], r["manufacturerCampaignReference"]): r
        for r in (await client.get("/__admin/recalls")).json()
    }
    assert set(held) == {(VIN, MANUFACTURER_REF), (VIN_16, MANUFACTURER_REF), (VIN, "OTHER")}
    assert held[VIN, MANUFACTURER_REF]["dvsaCampaignReference"] == DVSA_REF
    assert held[VIN, MANUFACTURER_REF]["repairStatus"] == "NOT_FIXED"
    assert held[VIN_16, MANUFACTURER_REF]["dvsaCampaignReference"] is None
    assert held[VIN, "OTHER"]["repairStatus"] == "FIXED"
    # The DVSA API sees them as if they had been created through it.
    fix = await client.put(
        f"/recalls/vin/{VIN_16}",
        params={"manufacturerCampaignReference": MANUFACTURER_REF},
        json={"rectificationDate": "2022-09-05", "repairStatus": "FIXED"},
        headers=auth,
    )
    assert fix.status_code == 204, fix.text
    duplicate = await client.post("/recalls", json=seed(), headers=auth)
    assert duplicate.status_code == 409


async def test_seeding_is_neither_journaled_nor_rate_limited(client: httpx.AsyncClient) -> None:
    items = [seed(vin=f"SEED{n:013d}", dvsaCampaignReference=None) for n in range(3000)]
    for half in (items[:1500], items[1500:]):  # far beyond the rate limit: never a 429
        response = await client.post("/__admin/recalls", json=half)
        assert response.status_code == 201
    assert len((await client.get("/__admin/recalls")).json()) == 3000
    assert (await client.get("/__admin/requests")).json() == []
    assert (await client.get("/__admin/stats")).json()["create"]["count"] == 0


async def test_an_empty_list_seeds_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post("/__admin/recalls", json=[])
    assert (response.status_code, response.json()) == (201, {"seeded": 0})


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (seed(vin=None), "[1].vin"),
        (seed(manufacturerCampaignReference=None), "[1].manufacturerCampaignReference"),
        (seed(recallCampaignStartDate=None), "[1].recallCampaignStartDate"),
        (seed(vin=12345678901234567), "[1].vin"),
        (seed(recallCampaignStartDate=""), "[1].recallCampaignStartDate"),
        (seed(dvsaCampaignReference=7), "[1].dvsaCampaignReference"),
        (seed(repairStatus="MENDED"), "[1].repairStatus"),
        ("not an object", "[1]"),
    ],
)
async def test_a_malformed_item_is_refused_naming_the_field(
    client: httpx.AsyncClient, item: object, field: str
) -> None:
    good = seed(vin=VIN_16, dvsaCampaignReference=None)
    response = await client.post("/__admin/recalls", json=[good, item])
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}: ")
    assert (await client.get("/__admin/recalls")).json() == []  # nothing half-seeded


@pytest.mark.parametrize("content", [b'{"vin": "x"}', b"not json", b""])
async def test_the_body_must_be_a_list(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/__admin/recalls", content=content)
    assert response.status_code == 400
    assert response.json()["error"].startswith("body: ")


async def test_a_taken_reference_refuses_the_whole_seed(client: httpx.AsyncClient) -> None:
    assert (await client.post("/__admin/recalls", json=[seed()])).status_code == 201
    clash = seed(manufacturerCampaignReference="OTHER")  # same VIN and DVSA reference
    response = await client.post("/__admin/recalls", json=[seed(vin=VIN_16), clash])
    assert response.status_code == 409
    assert response.json()["error"].startswith("[1].dvsaCampaignReference: ")
    within = await client.post("/__admin/recalls", json=[seed(vin=VIN_16), seed(vin=VIN_16)])
    assert within.status_code == 409
    assert within.json()["error"].startswith("[1].manufacturerCampaignReference: ")
    assert len((await client.get("/__admin/recalls")).json()) == 1
