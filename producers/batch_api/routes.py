"""The endpoints of ``/v1/recalls-batch``: submit, status, results and download (CarsXE's shapes).

Every endpoint needs an API key; a batch is visible only to the key that submitted it (any other key
meets 404, as if it did not exist).  Results and download answer 409 until the batch has finished.
A key over its quota (:mod:`recalls.producers.batch_api.quotas`) is refused before its VINs are read.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which name the
# dependency made in router(), and a string annotation cannot see a function's locals.
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import StreamingResponse

from recalls.producers.batch_api.auth import Caller
from recalls.producers.batch_api.errors import SUBMIT_PATH, ApiError, error_responses
from recalls.producers.batch_api.jobs import BatchChecks
from recalls.producers.batch_api.submit import SubmitRequest, checked_webhook, requested_vins
from recalls.producers.batch_api.views import FINISHED, Job, Reply, Results, csv_lines, job, reply, vin_result
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKey
from recalls.shared.store.batches import BatchStatus

QUEUED = (
    "Batch submitted and queued for processing. Poll the status endpoint or wait for webhook notification."
)
FROM_CACHE = "Batch completed from recent results; no VIN needed a new check."
BatchId = Annotated[str, Query(alias="batchId", min_length=1, max_length=64, description="From the submit.")]


def router(settings: Settings, checks: BatchChecks, caller: Caller) -> APIRouter:
    """The endpoints over ``checks``, for the callers ``caller`` lets in."""
    api = APIRouter(prefix="/v1/recalls-batch", tags=["recalls batch"])
    by_key = Depends(caller)

    async def owned(batch_id: str, key: ApiKey) -> BatchStatus:
        status = await checks.batches.status(batch_id)
        if status is None or status.owner != key.id:
            raise ApiError(404, "BULK_RECALL_BATCH_NOT_FOUND", f"batchId: no batch {batch_id} for this key")
        return status

    async def finished(batch_id: str, key: ApiKey) -> BatchStatus:
        status = await owned(batch_id, key)
        if status.status not in FINISHED:
            message = f"batchId: batch {batch_id} is still {job(status).status}; poll the status endpoint"
            raise ApiError(409, "BULK_RECALL_BATCH_NOT_COMPLETE", message)
        return status

    @api.post(
        SUBMIT_PATH.removeprefix(api.prefix),
        status_code=202,
        response_model=Reply[Job],
        response_model_exclude_unset=True,
        responses=error_responses(400, 401, 403, 413, 429, 500, 502),
        summary="Submit VINs for a recall check",
    )
    async def submit(
        key: Annotated[ApiKey, by_key], request: Annotated[SubmitRequest | None, Body()] = None
    ) -> Reply[Job]:
        """Merge the VINs of ``vins``, ``csv`` and ``csvUrl`` into one batch (GET: 405 ONLY_POST_ALLOWED)."""
        await checks.admit(key.id)
        request = request or SubmitRequest()
        webhook_url = checked_webhook(request, settings)
        vins = await requested_vins(request, settings)
        status = await checks.submit(vins, owner=key.id, webhook_url=webhook_url)
        message = FROM_CACHE if status.status == "completed" else QUEUED
        return reply(job(status, total=len(vins)), message)

    @api.get(
        "/status",
        response_model=Reply[Job],
        response_model_exclude_unset=True,
        responses=error_responses(400, 401, 403, 404, 500),
        summary="A batch's progress",
    )
    async def status(key: Annotated[ApiKey, by_key], batch_id: BatchId) -> Reply[Job]:
        return reply(job(await owned(batch_id, key)))

    @api.get(
        "/results",
        response_model=Reply[Results],
        response_model_exclude_unset=True,
        responses=error_responses(400, 401, 403, 404, 409, 500),
        summary="Every VIN's recalls, once the batch has finished",
    )
    async def results(key: Annotated[ApiKey, by_key], batch_id: BatchId) -> Reply[Results]:
        status = await finished(batch_id, key)
        rows = [vin_result(row) async for row in checks.batches.results(batch_id)]
        return reply(Results(job=job(status), results=rows))

    @api.get(
        "/download",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/csv": {}}, "description": "One row per recall (one per VIN without)."},
            **error_responses(400, 401, 403, 404, 409, 500),
        },
        summary="The results as CSV, once the batch has finished",
    )
    async def download(key: Annotated[ApiKey, by_key], batch_id: BatchId) -> StreamingResponse:
        await finished(batch_id, key)
        return StreamingResponse(
            csv_lines(checks.batches.results(batch_id)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="recalls_{batch_id}.csv"'},
        )

    return api
