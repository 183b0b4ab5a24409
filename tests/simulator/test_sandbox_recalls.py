"""DVSA's four endpoints: each success and each error, with DVSA's status and errorCode."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from tests.support.sandbox_helpers import (
    DVSA_REF,
    MANUFACTURER_REF,
    START_DATE,
    VIN,
    VIN_16,
    assert_dvsa_error,
    recall,
)

ALREADY_FIXED = "Vehicle recall has already been marked as fixed"
ALREADY_NOT_FIXED = "Vehicle recall has already been marked as not fixed"
RECTIFIED_BEFORE_START = "Recall rectification date cannot be before recall campaign start date"
BY_MANUFACTURER = {"manufacturerCampaignReference": MANUFACTURER_REF}
BY_DVSA = {"dvsaCampaignReference": DVSA_REF}
FIXED = {"rectificationDate": "2022-09-05", "repairStatus": "FIXED"}
NOT_FIXED = {"rectificationDate": "2022-09-06", "repairStatus": "NOT_FIXED"}
SECOND_CAMPAIGN = {"manufacturerCampaignReference": "OTHER-1", "dvsaCampaignReference": "R/2023/001"}


class Dvsa:
    """Authenticated calls, spelled the way the tests read best."""

    def __init__(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self.client = client
        self.auth = auth

    async def create(self, body: Any) -> httpx.Response:
        return await self.client.post("/recalls", json=body, headers=self.auth)

    async def fix(
        self, vin: str, query: dict[str, str], body: Any = None, content: bytes | None = None
    ) -> httpx.Response:
        return await self.client.put(
            f"/recalls/vin/{vin}",
            params=query,
            json=FIXED if body is None and content is None else body,
            content=content,
            headers=self.auth,
        )

    async def get(self, vin: str, query: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.get(f"/recalls/vin/{vin}", params=query, headers=self.auth)

    async def delete(self, vin: str, query: dict[str, str]) -> httpx.Response:
        return await self.client.delete(f"/recalls/vin/{vin}", params=query, headers=self.auth)

    async def state(self) -> list[dict[str, Any]]:
        recalls: list[dict[str, Any]] = (await self.client.get("/__admin/recalls")).json()
        return recalls


@pytest.fixture
def dvsa(client: httpx.AsyncClient, auth: dict[str, str]) -> Dvsa:
    return Dvsa(client, auth)


@pytest.fixture
async def created(dvsa: Dvsa) -> None:
    response = await dvsa.create(recall())
    assert response.status_code == 201, response.text


class TestCreate:
    async def test_created(self, dvsa: Dvsa) -> None:
        response = await dvsa.create(recall())
        assert response.status_code == 201
        assert response.json() == {
            "manufacturer": "DVSA Motors",
            "recall": {
                "vin": VIN,
                "manufacturerCampaignReference": MANUFACTURER_REF,
                "dvsaCampaignReference": DVSA_REF,
                "recallCampaignStartDate": START_DATE,
            },
        }
        [stored] = await dvsa.state()
        assert stored["repairStatus"] == "NOT_FIXED"
        assert stored["rectificationDate"] is None

    async def test_dvsa_reference_is_optional(self, dvsa: Dvsa) -> None:
        response = await dvsa.create(recall(dvsaCampaignReference=None))
        assert response.status_code == 201
        assert "dvsaCampaignReference" not in response.json()["recall"]
        empty = await dvsa.create(recall(vin=VIN_16, dvsaCampaignReference=""))
        assert empty.status_code == 201
        assert [item["dvsaCampaignReference"] for item in await dvsa.state()] == [None, None]

    async def test_16_character_vin_is_accepted(self, dvsa: Dvsa) -> None:
        response = await dvsa.create(recall(vin=VIN_16))
        assert response.status_code == 201
        assert response.json()["recall"]["vin"] == VIN_16

    async def test_vin_is_case_insensitive_and_stored_upper_cased(self, dvsa: Dvsa) -> None:
        response = await dvsa.create(recall(vin=VIN.lower()))
        assert response.json()["recall"]["vin"] == VIN
        duplicate = await dvsa.create(recall())
        assert_dvsa_error(duplicate, 409, "RECALLS-CF-01")
        assert (await dvsa.get(VIN.lower())).json()["vin"] == VIN

    @pytest.mark.parametrize("overrides", [{"manufacturer": "Acme Cars"}])
    async def test_manufacturer_name_is_configurable(self, dvsa: Dvsa, overrides: dict[str, Any]) -> None:
        assert (await dvsa.create(recall())).json()["manufacturer"] == "Acme Cars"

    async def test_same_campaign_twice_is_409(self, dvsa: Dvsa, created: None) -> None:
        response = await dvsa.create(recall())
        assert_dvsa_error(response, 409, "RECALLS-CF-01")

    async def test_same_dvsa_reference_under_another_manufacturer_reference_is_409(
        self, dvsa: Dvsa, created: None
    ) -> None:
        response = await dvsa.create(recall(manufacturerCampaignReference="OTHER-1"))
        assert_dvsa_error(response, 409, "RECALLS-CF-01")

    async def test_same_campaign_on_other_vehicles_and_other_campaigns_are_fine(
        self, dvsa: Dvsa, created: None
    ) -> None:
        assert (await dvsa.create(recall(vin=VIN_16))).status_code == 201
        other = recall(manufacturerCampaignReference="OTHER-1", dvsaCampaignReference="R/2023/001")
        assert (await dvsa.create(other)).status_code == 201
        assert len(await dvsa.state()) == 3

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"vin": None}, "vin"),
            ({"vin": "WAUZZZF49HA0367"}, "vin"),  # 15
            ({"vin": "WAUZZZF49HA0367845"}, "vin"),  # 18
            ({"vin": "WAUZZZF49HA03678-"}, "vin"),
            ({"vin": 12345678901234567}, "vin"),
            ({"manufacturerCampaignReference": None}, "manufacturerCampaignReference"),
            ({"manufacturerCampaignReference": "X" * 50}, "manufacturerCampaignReference"),
            ({"manufacturerCampaignReference": "has space"}, "manufacturerCampaignReference"),
            ({"manufacturerCampaignReference": 42}, "manufacturerCampaignReference"),
            ({"dvsaCampaignReference": "R-2022-123"}, "dvsaCampaignReference"),
            ({"dvsaCampaignReference": "R/22/123"}, "dvsaCampaignReference"),
            ({"dvsaCampaignReference": "2022/123"}, "dvsaCampaignReference"),
            ({"recallCampaignStartDate": None}, "recallCampaignStartDate"),
            ({"recallCampaignStartDate": "2022/08/07"}, "recallCampaignStartDate"),
            ({"recallCampaignStartDate": "07-08-2022"}, "recallCampaignStartDate"),
            ({"recallCampaignStartDate": "2022-02-30"}, "recallCampaignStartDate"),
        ],
    )
    async def test_invalid_fields_are_400_naming_the_field(
        self, dvsa: Dvsa, changes: dict[str, Any], field: str
    ) -> None:
        response = await dvsa.create(recall(**changes))
        message = assert_dvsa_error(response, 400, "RECALLS-BR-01")
        assert field in message
        assert await dvsa.state() == []

    @pytest.mark.parametrize("reference", ["A", "a_b/c\\d-9", "X" * 49])
    async def test_manufacturer_reference_alphabet(self, dvsa: Dvsa, reference: str) -> None:
        response = await dvsa.create(recall(manufacturerCampaignReference=reference))
        assert response.status_code == 201

    @pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b'"text"'])
    async def test_a_body_that_is_not_a_json_object_is_400(
        self, client: httpx.AsyncClient, auth: dict[str, str], content: bytes
    ) -> None:
        response = await client.post("/recalls", content=content, headers=auth)
        message = assert_dvsa_error(response, 400, "RECALLS-BR-01")
        assert message == "Invalid request body"


class TestFix:
    @pytest.mark.parametrize("query", [BY_MANUFACTURER, BY_DVSA, BY_MANUFACTURER | BY_DVSA])
    async def test_fixed(self, dvsa: Dvsa, created: None, query: dict[str, str]) -> None:
        response = await dvsa.fix(VIN, query)
        assert response.status_code == 204
        assert response.content == b""
        [stored] = await dvsa.state()
        assert stored["repairStatus"] == "FIXED"
        assert stored["rectificationDate"] == "2022-09-05"
        assert (await dvsa.get(VIN)).json()["recalls"][0]["repairStatus"] == "FIXED"

    async def test_fixed_twice_is_400(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.fix(VIN, BY_MANUFACTURER)
        response = await dvsa.fix(VIN, BY_MANUFACTURER)
        assert assert_dvsa_error(response, 400, "RECALLS-BR-01") == ALREADY_FIXED

    async def test_not_fixed_on_an_open_recall_is_400(self, dvsa: Dvsa, created: None) -> None:
        response = await dvsa.fix(VIN, BY_MANUFACTURER, NOT_FIXED)
        assert assert_dvsa_error(response, 400, "RECALLS-BR-01") == ALREADY_NOT_FIXED

    async def test_reopen_with_not_fixed_then_fix_again(self, dvsa: Dvsa, created: None) -> None:
        assert (await dvsa.fix(VIN, BY_MANUFACTURER)).status_code == 204
        assert (await dvsa.fix(VIN, BY_DVSA, NOT_FIXED)).status_code == 204
        [stored] = await dvsa.state()
        assert stored["repairStatus"] == "NOT_FIXED"
        assert stored["rectificationDate"] is None
        assert (await dvsa.fix(VIN, BY_MANUFACTURER)).status_code == 204

    async def test_reopening_needs_no_rectification_date(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.fix(VIN, BY_MANUFACTURER)
        response = await dvsa.fix(VIN, BY_MANUFACTURER, {"repairStatus": "NOT_FIXED"})
        assert response.status_code == 204

    async def test_rectification_before_campaign_start_is_400(self, dvsa: Dvsa, created: None) -> None:
        day_before = str(dt.date.fromisoformat(START_DATE) - dt.timedelta(days=1))
        body = {"rectificationDate": day_before, "repairStatus": "FIXED"}
        response = await dvsa.fix(VIN, BY_MANUFACTURER, body)
        assert assert_dvsa_error(response, 400, "RECALLS-BR-01") == RECTIFIED_BEFORE_START
        same_day = {"rectificationDate": START_DATE, "repairStatus": "FIXED"}
        assert (await dvsa.fix(VIN, BY_MANUFACTURER, same_day)).status_code == 204

    @pytest.mark.parametrize(
        ("vin", "query"),
        [
            (VIN_16, BY_MANUFACTURER),
            (VIN, {"manufacturerCampaignReference": "UNKNOWN-1"}),
            (VIN, {"dvsaCampaignReference": "R/2099/999"}),
            (VIN, {"manufacturerCampaignReference": MANUFACTURER_REF, "dvsaCampaignReference": "R/2099/999"}),
        ],
    )
    async def test_unknown_vehicle_or_campaign_is_404(
        self, dvsa: Dvsa, created: None, vin: str, query: dict[str, str]
    ) -> None:
        assert_dvsa_error(await dvsa.fix(vin, query), 404, "RECALLS-NF-01")

    async def test_a_reference_is_required(self, dvsa: Dvsa, created: None) -> None:
        message = assert_dvsa_error(await dvsa.fix(VIN, {}), 400, "RECALLS-BR-01")
        assert "manufacturerCampaignReference" in message

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"rectificationDate": "2022-09-05"}, "repairStatus"),
            ({"rectificationDate": "2022-09-05", "repairStatus": "BROKEN"}, "repairStatus"),
            ({"repairStatus": "FIXED"}, "rectificationDate"),
            ({"rectificationDate": "2022-13-01", "repairStatus": "FIXED"}, "rectificationDate"),
            ({"rectificationDate": "5 Sep 2022", "repairStatus": "FIXED"}, "rectificationDate"),
        ],
    )
    async def test_invalid_bodies_are_400(
        self, dvsa: Dvsa, created: None, body: dict[str, str], field: str
    ) -> None:
        message = assert_dvsa_error(await dvsa.fix(VIN, BY_MANUFACTURER, body), 400, "RECALLS-BR-01")
        assert field in message

    async def test_invalid_json_is_400(self, dvsa: Dvsa, created: None) -> None:
        response = await dvsa.fix(VIN, BY_MANUFACTURER, content=b"{oops")
        assert assert_dvsa_error(response, 400, "RECALLS-BR-01") == "Invalid request body"

    @pytest.mark.parametrize(
        ("vin", "query", "field"),
        [
            ("NOT-A-VIN", BY_MANUFACTURER, "vin"),
            (VIN, {"dvsaCampaignReference": "bad"}, "dvsaCampaignReference"),
            (VIN, {"manufacturerCampaignReference": "bad ref"}, "manufacturerCampaignReference"),
        ],
    )
    async def test_invalid_address_is_400(
        self, dvsa: Dvsa, created: None, vin: str, query: dict[str, str], field: str
    ) -> None:
        message = assert_dvsa_error(await dvsa.fix(vin, query), 400, "RECALLS-BR-01")
        assert field in message


class TestGet:
    async def test_all_recalls_of_a_vehicle(self, dvsa: Dvsa, created: None) -> None:
        second = recall(manufacturerCampaignReference="OTHER-1", dvsaCampaignReference=None)
        await dvsa.create(second)
        response = await dvsa.get(VIN.lower())
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"vin", "manufacturer", "recalls", "lastUpdatedDate"}
        assert body["vin"] == VIN
        assert body["manufacturer"] == "DVSA Motors"
        assert body["recalls"] == [
            {
                "manufacturerCampaignReference": MANUFACTURER_REF,
                "dvsaCampaignReference": DVSA_REF,
                "recallCampaignStartDate": START_DATE,
                "repairStatus": "NOT_FIXED",
            },
            {
                "manufacturerCampaignReference": "OTHER-1",
                "recallCampaignStartDate": START_DATE,
                "repairStatus": "NOT_FIXED",
            },
        ]
        updated = dt.datetime.fromisoformat(body["lastUpdatedDate"])
        assert abs(dt.datetime.now(dt.UTC) - updated) < dt.timedelta(minutes=1)

    @pytest.mark.parametrize("query", [BY_MANUFACTURER, BY_DVSA])
    async def test_filtered_by_either_reference(
        self, dvsa: Dvsa, created: None, query: dict[str, str]
    ) -> None:
        await dvsa.create(recall(manufacturerCampaignReference="OTHER-1", dvsaCampaignReference=None))
        recalls = (await dvsa.get(VIN, query)).json()["recalls"]
        assert [item["manufacturerCampaignReference"] for item in recalls] == [MANUFACTURER_REF]

    @pytest.mark.parametrize(
        ("vin", "query"),
        [
            (VIN_16, None),
            (VIN, {"manufacturerCampaignReference": "OTHER-9"}),
            (VIN, {"dvsaCampaignReference": "R/2099/999"}),
        ],
    )
    async def test_nothing_found_is_404(
        self, dvsa: Dvsa, created: None, vin: str, query: dict[str, str] | None
    ) -> None:
        assert_dvsa_error(await dvsa.get(vin, query), 404, "RECALLS-NF-01")

    async def test_invalid_vin_or_filter_is_400(self, dvsa: Dvsa, created: None) -> None:
        assert_dvsa_error(await dvsa.get("SHORT"), 400, "RECALLS-BR-01")
        assert_dvsa_error(await dvsa.get(VIN, {"dvsaCampaignReference": "x"}), 400, "RECALLS-BR-01")


class TestDelete:
    @pytest.mark.parametrize("query", [BY_MANUFACTURER, BY_DVSA])
    async def test_deleted(self, dvsa: Dvsa, created: None, query: dict[str, str]) -> None:
        response = await dvsa.delete(VIN, query)
        assert response.status_code == 204
        assert await dvsa.state() == []
        assert_dvsa_error(await dvsa.get(VIN), 404, "RECALLS-NF-01")

    async def test_only_the_addressed_recall_goes(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.create(recall(manufacturerCampaignReference="OTHER-1", dvsaCampaignReference=None))
        assert (await dvsa.delete(VIN, BY_DVSA)).status_code == 204
        assert [item["manufacturerCampaignReference"] for item in await dvsa.state()] == ["OTHER-1"]

    async def test_a_fixed_recall_cannot_be_deleted(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.fix(VIN, BY_MANUFACTURER)
        response = await dvsa.delete(VIN, BY_MANUFACTURER)
        assert assert_dvsa_error(response, 400, "RECALLS-BR-01") == ALREADY_FIXED
        assert len(await dvsa.state()) == 1

    async def test_a_reopened_recall_can_be_deleted(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.fix(VIN, BY_MANUFACTURER)
        await dvsa.fix(VIN, BY_MANUFACTURER, NOT_FIXED)
        assert (await dvsa.delete(VIN, BY_MANUFACTURER)).status_code == 204

    async def test_unknown_is_404(self, dvsa: Dvsa, created: None) -> None:
        assert_dvsa_error(await dvsa.delete(VIN_16, BY_MANUFACTURER), 404, "RECALLS-NF-01")
        missing = {"manufacturerCampaignReference": "NOPE"}
        assert_dvsa_error(await dvsa.delete(VIN, missing), 404, "RECALLS-NF-01")

    async def test_deleted_twice_is_404(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.delete(VIN, BY_MANUFACTURER)
        assert_dvsa_error(await dvsa.delete(VIN, BY_MANUFACTURER), 404, "RECALLS-NF-01")

    async def test_a_reference_is_required(self, dvsa: Dvsa, created: None) -> None:
        assert_dvsa_error(await dvsa.delete(VIN, {}), 400, "RECALLS-BR-01")
        assert len(await dvsa.state()) == 1

    async def test_can_be_created_again_after_delete(self, dvsa: Dvsa, created: None) -> None:
        await dvsa.delete(VIN, BY_MANUFACTURER)
        assert (await dvsa.create(recall())).status_code == 201


class TestConflictRule:
    """``conflict="vin"`` answers as DVSA's mock does; the default keeps the sandbox's per-campaign rule."""

    @pytest.mark.parametrize("overrides", [{"conflict": "vin"}])
    async def test_vin_mode_refuses_a_second_campaign_naming_the_first(
        self, dvsa: Dvsa, overrides: dict[str, Any]
    ) -> None:
        assert (await dvsa.create(recall())).status_code == 201
        response = await dvsa.create(recall(vin=VIN.lower(), **SECOND_CAMPAIGN))
        message = assert_dvsa_error(response, 409, "RECALLS-CF-01")
        assert message == f"Vehicle already registered with VIN: {VIN} and DvsaCampaignReference: {DVSA_REF}"
        recalls = (await dvsa.get(VIN)).json()["recalls"]
        assert [item["manufacturerCampaignReference"] for item in recalls] == [MANUFACTURER_REF]

    @pytest.mark.parametrize("overrides", [{"conflict": "vin"}])
    async def test_vin_mode_names_the_oldest_campaign_by_manufacturer_reference_without_a_dvsa_one(
        self, dvsa: Dvsa, client: httpx.AsyncClient, overrides: dict[str, Any]
    ) -> None:
        seeded = [recall(dvsaCampaignReference=None), recall(**SECOND_CAMPAIGN)]
        assert (await client.post("/__admin/recalls", json=seeded)).status_code == 201
        third = recall(manufacturerCampaignReference="THIRD-1", dvsaCampaignReference="R/2024/002")
        message = assert_dvsa_error(await dvsa.create(third), 409, "RECALLS-CF-01")
        assert message.endswith(f"DvsaCampaignReference: {MANUFACTURER_REF}")
        assert len(await dvsa.state()) == 2

    @pytest.mark.parametrize("overrides", [{"conflict": "vin"}])
    async def test_vin_mode_lets_new_vehicles_and_emptied_ones_in(
        self, dvsa: Dvsa, overrides: dict[str, Any]
    ) -> None:
        assert (await dvsa.create(recall())).status_code == 201
        assert (await dvsa.create(recall(vin=VIN_16, **SECOND_CAMPAIGN))).status_code == 201
        assert (await dvsa.delete(VIN, BY_MANUFACTURER)).status_code == 204
        assert (await dvsa.create(recall(**SECOND_CAMPAIGN))).status_code == 201

    @pytest.mark.parametrize("overrides", [{}, {"conflict": "campaign"}], ids=["default", "campaign"])
    async def test_campaign_mode_takes_a_second_campaign_on_a_known_vin(
        self, dvsa: Dvsa, overrides: dict[str, Any]
    ) -> None:
        assert (await dvsa.create(recall())).status_code == 201
        assert (await dvsa.create(recall(**SECOND_CAMPAIGN))).status_code == 201
        assert_dvsa_error(await dvsa.create(recall()), 409, "RECALLS-CF-01")
        recalls = (await dvsa.get(VIN)).json()["recalls"]
        assert [item["manufacturerCampaignReference"] for item in recalls] == [MANUFACTURER_REF, "OTHER-1"]
