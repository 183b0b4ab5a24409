"""How a batch looks from outside: CarsXE's JSON (job, results) and CSV, built from the store's records.

The store's states map to CarsXE's: publishing -> uploading, running -> processing, completed ->
completed (partial when any VIN's check failed), failed and cancelled -> failed.  A VIN has recalls
(``hasRecalls``, decided by the store) when DVSA reports one that is not FIXED; ``recallCount`` counts
every recall reported.  The models are the OpenAPI description too; fields not set are left out.

A CSV cell that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return) is written with a leading ``'``, as OWASP advises against CSV injection: a
campaign reference or an error comes from outside and must not run in the reader's spreadsheet.  JSON
carries every value as it is.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Iterable
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from recalls.shared.store.batches import BatchState, BatchStatus

ApiState = Literal["uploading", "processing", "completed", "partial", "failed"]
_STATES: dict[BatchState, ApiState] = {
    "publishing": "uploading",
    "running": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
}
FINISHED: frozenset[BatchState] = frozenset({"completed", "failed", "cancelled"})
CSV_COLUMNS = (
    "vin",
    "hasRecalls",
    "recallCount",
    "manufacturerCampaignReference",
    "dvsaCampaignReference",
    "recallCampaignStartDate",
    "repairStatus",
    "error",
)
_RECALL_FIELDS = (
    "manufacturer_campaign_reference",
    "dvsa_campaign_reference",
    "recall_campaign_start_date",
    "repair_status",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

T = TypeVar("T")


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class Job(_Camel):
    """A batch's progress."""

    batch_id: str
    status: ApiState
    total_vins: int = Field(description="Distinct VINs of the batch.")
    processed_vins: int = Field(description="VINs answered so far (from the cache or DVSA).")
    hit_count: int = Field(description="VINs with at least one recall that is not FIXED.")
    hit_rate: float = Field(description="hitCount / processedVins x 100, two decimals (0 before any).")
    created_at: str
    updated_at: str
    completed_at: str | None = Field(default=None, description="Left out while the batch runs.")
    error_message: str | None = Field(default=None, description="Why the batch failed (null otherwise).")


class RecallView(_Camel):
    """One recall as DVSA reports it; empty fields are left out."""

    manufacturer_campaign_reference: str | None = None
    dvsa_campaign_reference: str | None = None
    recall_campaign_start_date: str | None = None
    repair_status: str | None = None


class VinResult(_Camel):
    vin: str
    has_recalls: bool
    recall_count: int
    recalls: list[RecallView]
    error: str | None = Field(
        default=None, description="Why this VIN could not be checked (left out otherwise)."
    )


class Results(_Camel):
    job: Job
    results: list[VinResult]


class Reply(BaseModel, Generic[T]):
    """Every successful answer: ``success`` true, the data, and for a submit a message."""

    success: Literal[True]
    data: T
    message: str | None = None


def reply(data: T, message: str | None = None) -> Reply[T]:
    """A reply with ``success`` set, so that it stays when fields not set are left out; a message if given."""
    if message is None:
        return Reply(success=True, data=data)
    return Reply(success=True, data=data, message=message)


def api_state(status: BatchStatus) -> ApiState:
    if status.status == "completed" and status.failed:
        return "partial"
    return _STATES[status.status]


def job(status: BatchStatus, *, total: int | None = None) -> Job:
    """``status`` as CarsXE's job; ``total``: the VIN count when the store cannot know it yet."""
    hit_rate = round(status.hits * 100 / status.processed, 2) if status.processed else 0
    view = Job(
        batch_id=status.id,
        status=api_state(status),
        total_vins=max(status.total, total or 0),
        processed_vins=status.processed,
        hit_count=status.hits,
        hit_rate=hit_rate,
        created_at=timestamp(status.created_at),
        updated_at=timestamp(status.updated_at),
        error_message=status.error_message,
    )
    if status.status in FINISHED:
        view.completed_at = timestamp(status.completed_at or status.updated_at)
    return view


def timestamp(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as CarsXE writes it: ``2026-03-24T10:00:00.000Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def vin_result(row: dict[str, Any]) -> VinResult:
    """A journal row of :meth:`Batches.results` as the VIN's result."""
    recalls: list[dict[str, Any]] = row["recalls"] or []
    result = VinResult(
        vin=row["vin"],
        has_recalls=bool(row["has_recalls"]),
        recall_count=len(recalls),
        recalls=[
            RecallView(**{name: recall[name] for name in _RECALL_FIELDS if recall.get(name)})
            for recall in recalls
        ],
    )
    if row["result"] == "failed":
        result.error = row["reason"] or "DVSA refused the check"
    elif row["result"] is None:
        result.error = "not checked: the batch ended first"
    return result


async def csv_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """The CSV download: a header, then one line per recall (one with empty recall columns if none)."""
    yield _line(CSV_COLUMNS)
    async for row in rows:
        result = vin_result(row)
        head = (result.vin, str(result.has_recalls).lower(), result.recall_count)
        tail = (result.error or "",)
        for recall in result.recalls or [RecallView()]:
            yield _line((*head, *(getattr(recall, name) or "" for name in _RECALL_FIELDS), *tail))


def _line(cells: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_inert(str(cell)) for cell in cells])
    return buffer.getvalue()


def _inert(cell: str) -> str:
    """``cell`` as a spreadsheet shows it as text: one that could start a formula is quoted."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell
