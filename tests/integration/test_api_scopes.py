"""A key's scopes over real HTTP: ``ops`` opens the fleet-wide dashboard, ``batch`` the batch API.

A customer's key (``batch`` only, the default) meets 403 on the dashboard's page and its feed, which
show the whole fleet; an operator's key (``ops`` only) meets 403 on the batch routes.  The refusal
names the scope missing and never holds the key.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shared.store.api_keys import ApiKeys
from tests.integration.conftest import base_settings
from tests.support.batch_api import API, LIGHT, assert_error, delete_topology, running_api
from tests.support.commands import vin

pytestmark = pytest.mark.integration

DASHBOARD = ("/dashboard", "/dashboard/data")


async def test_a_key_without_ops_meets_403_on_the_dashboard_page_and_feed(
    prefix: str, store_path: Path
) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    try:
        async with running_api(settings) as api:
            _, operator = await ApiKeys(api.db).create("operators", scopes=("ops",))
            refused = [await as_key(api.http, "GET", path, api.key) for path in DASHBOARD]
            allowed = [await as_key(api.http, "GET", path, operator) for path in DASHBOARD]
    finally:
        await delete_topology(settings)
    for answer in refused:
        assert_error(answer, 403, "INSUFFICIENT_SCOPE", "key: lacks the ops scope", "--scope ops")
        assert api.key not in answer.text
    assert [answer.status_code for answer in allowed] == [200, 200]


async def test_a_key_without_batch_meets_403_on_the_batch_routes(prefix: str, store_path: Path) -> None:
    settings = base_settings(prefix, sqlite_path=store_path, **LIGHT)
    try:
        async with running_api(settings) as api:
            _, operator = await ApiKeys(api.db).create("operators", scopes=("ops",))
            batch_id = (await api.submit({"vins": [vin(1)]})).json()["data"]["batchId"]
            submit = await as_key(api.http, "POST", f"{API}/submit", operator, json={"vins": [vin(2)]})
            status = await as_key(api.http, "GET", f"{API}/status", operator, params={"batchId": batch_id})
    finally:
        await delete_topology(settings)
    for answer in (submit, status):
        assert_error(answer, 403, "INSUFFICIENT_SCOPE", "key: lacks the batch scope", "--scope batch")
        assert operator not in answer.text


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
