"""A 300-VIN batch end to end: the API, a worker and the sandbox, its results checked against the sandbox.

About a third of the VINs have recalls in the sandbox (some FIXED, some not, one VIN with two); the
VINs come as a JSON list and an inline CSV that overlap.  The batch must finish with one DVSA GET per
VIN, none throttled, and say of every VIN exactly what the sandbox holds.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import aio_pika
import pytest

from recalls.shared.settings import Settings
from tests.integration.conftest import Sandbox, running_worker
from tests.support.batch_api import by_vin, expected_results, running_api
from tests.support.commands import vin

pytestmark = pytest.mark.integration

VINS = [vin(5000 + n) for n in range(300)]
TWICE = VINS[0]  # the VIN with two recalls


def recalls_to_seed() -> list[dict[str, Any]]:
    """A recall on every third VIN, FIXED on every other one of those, and a second on ``TWICE``."""
    recalls: list[dict[str, Any]] = []
    for n, each in enumerate(VINS[::3]):
        recall: dict[str, Any] = {
            "vin": each,
            "manufacturerCampaignReference": f"CAMP-{n % 7}",
            "recallCampaignStartDate": "2024-06-01",
        }
        if n % 5 == 0:
            recall["dvsaCampaignReference"] = f"R/2024/{n:03d}"
        if n % 2:
            recall |= {"repairStatus": "FIXED", "rectificationDate": "2025-01-15"}
        recalls.append(recall)
    recalls.append(
        {
            "vin": TWICE,
            "manufacturerCampaignReference": "CAMP-EXTRA",
            "recallCampaignStartDate": "2023-03-03",
            "repairStatus": "FIXED",
            "rectificationDate": "2024-04-04",
        }
    )
    return recalls


async def test_a_300_vin_batch_says_what_the_sandbox_holds_of_every_vin(
    sandbox: Sandbox,
    settings: Settings,
    broker: aio_pika.abc.AbstractRobustConnection,
) -> None:
    (await sandbox.admin.post("/__admin/recalls", json=recalls_to_seed())).raise_for_status()
    async with running_api(settings) as api:
        csv_text = "Make,VIN\n" + "\n".join(f"Audi,{v}" for v in VINS[150:])
        accepted = await api.submit({"vins": [v.lower() for v in VINS[:200]], "csv": csv_text})
        assert accepted.status_code == 202, accepted.text
        batch_id = accepted.json()["data"]["batchId"]
        assert accepted.json()["data"]["totalVins"] == 300
        await api.status_until(batch_id, "processing")

        async with running_worker(settings) as worker:
            assert worker.recorder is not None
            async with asyncio.timeout(120):
                await worker.recorder.recorded(len(VINS))

        expected = expected_results(await sandbox.recalls(), VINS)
        hits = sum(entry["hasRecalls"] for entry in expected.values())
        # The seed is as meant: 100 VINs with recalls, half of them open, one VIN with two.
        assert expected[TWICE]["recallCount"] == 2 and hits == 50
        assert sum(entry["recallCount"] for entry in expected.values()) == 101

        status = (await api.get("status", batch_id)).json()["data"]
        assert status["status"] == "completed", status
        assert (status["totalVins"], status["processedVins"], status["hitCount"]) == (300, 300, hits)
        assert status["hitRate"] == round(hits * 100 / 300, 2)

        results = (await api.get("results", batch_id)).json()["data"]
        assert results["job"]["hitCount"] == hits
        assert len(results["results"]) == 300
        assert by_vin(results["results"]) == by_vin(list(expected.values()))

        rows = list(csv.DictReader(io.StringIO((await api.get("download", batch_id)).text)))
        assert len(rows) == sum(max(entry["recallCount"], 1) for entry in expected.values())
        assert {row["vin"] for row in rows} == set(VINS)

    gets = (await sandbox.stats())["get"]
    assert (gets["count"], gets["throttled"]) == (300, 0)
