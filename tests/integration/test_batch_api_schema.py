"""The batch API against its own OpenAPI description: generated requests to every operation over real HTTP.

schemathesis reads ``/openapi.json`` from the running service and generates requests to each operation,
ones that fit the description and ones that break it, all with a real key.  No answer may be a 5xx,
and every answer must have a documented status, content type, headers and body; requests that break
the description must be refused.  Random strings are seldom VINs or batch ids, so valid VINs and the
key's own batches (one completed, one running) are mixed in to reach the 202 and 200 answers too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup

from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.checks import VinChecks
from tests.integration.conftest import base_settings
from tests.support.batch_api import API, LIGHT, Api, checked, delete_topology, running_api
from tests.support.commands import vin

pytestmark = pytest.mark.integration

Operation = APIOperation[Any, Any, Any, Any]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
VALID_VINS = [vin(200 + n) for n in range(8)]
FUZZING = hypothesis_settings(
    max_examples=40,  # per operation and mode: the whole test stays well under a minute on two cores
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is stable
    database=None,  # and none remembered between runs
    # schemathesis's strategies are heavy and filter a lot; on two shared cores that is no fault of ours
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


async def test_no_generated_request_meets_a_server_error_or_an_undocumented_answer(
    prefix: str, store_path: Path
) -> None:
    settings = base_settings(
        prefix,
        sqlite_path=store_path,
        **LIGHT,
        csv_url_allowed_hosts=("csv.example.invalid",),  # a generated csvUrl is refused before any look-up
        csv_url_timeout=1.0,
    )
    try:
        async with running_api(settings) as api:
            description = (await api.http.get("/openapi.json")).json()
            described = list(schemathesis.openapi.from_dict(description).get_all_operations())
            operations = [result.ok() for result in described if isinstance(result, Ok)]
            assert len(operations) == len(described) == 4  # every operation could be read
            batch_ids = await batches_to_ask_about(api)
            base_url = str(api.http.base_url)
            failed: dict[str, str] = {}
            for operation in operations:
                for mode in GenerationMode:
                    # Hypothesis and schemathesis's HTTP client are synchronous: off the loop the API runs on.
                    error = await asyncio.to_thread(fuzz, operation, mode, base_url, api.key, batch_ids)
                    if error is not None:
                        failed[f"{operation.label} ({mode.value})"] = error
    finally:
        await delete_topology(settings)
    assert not failed, "\n\n".join(f"{label}:\n{error}" for label, error in failed.items())


async def batches_to_ask_about(api: Api) -> list[str]:
    """The ids of a completed and a running batch of ``api.key``, and of another key's batch."""
    await VinChecks(api.db).remember(*(checked(v, []) for v in VALID_VINS[:2]))
    completed = (await api.submit({"vins": VALID_VINS[:2]})).json()["data"]
    running = (await api.submit({"vins": VALID_VINS[2:4]})).json()["data"]
    assert (completed["status"], running["status"]) == ("completed", "uploading")
    _, stranger = await ApiKeys(api.db).create("another team")
    theirs = await api.http.post(f"{API}/submit", params={"key": stranger}, json={"vins": VALID_VINS[4:]})
    return [completed["batchId"], running["batchId"], theirs.json()["data"]["batchId"]]


def fuzz(
    operation: Operation, mode: GenerationMode, base_url: str, key: str, batch_ids: list[str]
) -> str | None:
    """What went wrong with ``operation``'s generated requests (the smallest failing one), or None."""
    strategy = cases(operation, mode, key, batch_ids)

    @FUZZING
    @given(case=strategy)
    def check(case: Case[Operation]) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

    try:
        check()
    except (Exception, FailureGroup) as exc:  # every failure is reported, with the request that caused it
        return f"{type(exc).__name__}: {exc}"
    return None


def cases(
    operation: Operation, mode: GenerationMode, key: str, batch_ids: list[str]
) -> st.SearchStrategy[Case[Operation]]:
    """``operation``'s generated requests with the key; valid ones also with valid VINs or our batch ids."""

    def with_key(query: dict[str, str] | None = None, **fixed: Any) -> st.SearchStrategy[Case[Operation]]:
        return operation.as_strategy(generation_mode=mode, query={"key": key, **(query or {})}, **fixed)

    generated = with_key()
    if mode is not GenerationMode.POSITIVE:
        return generated
    if operation.method.upper() == "POST":
        bodies = st.lists(st.sampled_from(VALID_VINS), min_size=1, max_size=5).map(
            lambda vins: {"vins": vins}
        )
        return st.one_of(generated, bodies.flatmap(lambda body: with_key(body=body)))
    known = st.sampled_from(batch_ids).flatmap(lambda batch_id: with_key(query={"batchId": batch_id}))
    return st.one_of(generated, known)
