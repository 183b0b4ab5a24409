"""What a submit asks for: its body, the VINs of all its inputs merged, and its webhook URL checked.

VINs come from ``vins`` (a JSON array), ``csv`` (inline text) and ``csvUrl`` (fetched), in that order;
each is trimmed and upper-cased, the first occurrence of a VIN is kept, and every VIN must pass the
fleet's VIN rule.  A CSV holds one VIN a line, or has a header row with a ``vin`` column (any case),
whose column is then read.  Errors name where the offending value came from (``vins[3]``,
``csv line 7``, ``csvUrl line 2``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator, Sequence

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from recalls.producers.batch_api.errors import ApiError
from recalls.producers.csv_url import CsvUrlError, fetch_csv
from recalls.shared.contracts import GetCommand, Vin
from recalls.shared.settings import Settings
from recalls.shared.url_safety import UnsafeUrl, check_url
from recalls.shared.validation import InvalidCommand, validate

_AT_INDEX = re.compile(r"at `\$\[(\d+)\]`")
_SHOWN = 24  # characters of an invalid value quoted back


class SubmitRequest(BaseModel):
    """The body of ``POST /v1/recalls-batch/submit``: at least one of vins, csv and csvUrl."""

    model_config = ConfigDict(extra="forbid")

    vins: list[str] | None = Field(default=None, description="VINs, 16 or 17 letters and digits each.")
    csv: str | None = Field(
        default=None, description="CSV text: one VIN a line, or a header row with a vin column."
    )
    csv_url: str | None = Field(
        default=None, alias="csvUrl", description="An https URL of a CSV file in either shape (fetched once)."
    )
    webhook_url: str | None = Field(
        default=None,
        alias="webhookUrl",
        description="An https URL that receives a signed POST when the batch ends.",
    )


def checked_webhook(request: SubmitRequest, settings: Settings) -> str | None:
    """The request's webhook URL if it may be used; the webhook error (400) otherwise."""
    url = request.webhook_url
    if url is None:
        return None
    if settings.public_url is None:  # a webhook hands its receiver a downloadUrl on this address
        raise _bad_webhook("webhooks are off on this server (RECALLS_PUBLIC_URL is not set)")
    try:
        check_url(url, allow_private=settings.allow_private_urls, allowed_ports=settings.allowed_ports)
    except UnsafeUrl as exc:
        raise _bad_webhook(exc.reason) from None
    return url


def _bad_webhook(reason: str) -> ApiError:
    return ApiError(400, "BULK_RECALL_BATCH_INVALID_WEBHOOK_URL", f"webhookUrl: {reason}")


async def requested_vins(request: SubmitRequest, settings: Settings) -> list[str]:
    """The request's VINs from all its inputs, merged, deduplicated and checked."""
    texts = [] if request.csv is None else [("csv", request.csv)]
    if request.csv_url is not None:
        try:
            texts.append(("csvUrl", await fetch_csv(request.csv_url, settings)))
        except CsvUrlError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
    # Parsing a few megabytes of CSV takes a while: off the event loop.
    return await asyncio.to_thread(merge_vins, request.vins or [], texts, settings.batch_max_vins)


def merge_vins(vins: Sequence[str], texts: Sequence[tuple[str, str]], most: int) -> list[str]:
    """``vins`` then the VINs of each ``(field, csv text)``, first occurrence kept, at most ``most``."""
    origins: dict[str, str] = {}  # VIN -> where it first came from, for error messages
    sources = ((f"vins[{index}]", value) for index, value in enumerate(vins))
    for origin, value in _chain(sources, texts):
        vin = value.strip().upper()
        if vin not in origins:
            origins[vin] = origin
            if len(origins) > most:
                raise ApiError(
                    400,
                    "BULK_RECALL_BATCH_TOO_MANY_VINS",
                    f"vins: more than the {most} distinct VINs a batch may hold",
                )
    if not origins:
        raise ApiError(400, "BULK_RECALL_BATCH_MISSING_VINS", "vins: none given; supply vins, csv or csvUrl")
    _check(origins)
    return list(origins)


def _chain(sources: Iterator[tuple[str, str]], texts: Sequence[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    yield from sources
    for field, text in texts:
        for line, value in csv_vins(field, text):
            yield f"{field} line {line}", value


def csv_vins(field: str, text: str) -> Iterator[tuple[int, str]]:
    """``(line number, VIN)`` of each non-blank row of a CSV in either shape."""
    rows = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    column: int | None = None
    try:
        for row in rows:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if column is None:
                lowered = [cell.lower() for cell in cells]
                if "vin" in lowered:  # the header row
                    column = lowered.index("vin")
                    continue
                column = 0
            if column < len(cells) and cells[column]:
                yield rows.line_num, cells[column]
    except csv.Error as exc:
        raise ApiError(
            400, "BULK_RECALL_BATCH_INVALID_REQUEST", f"{field} line {rows.line_num}: {exc}"
        ) from None


def _check(origins: dict[str, str]) -> None:
    """Refuse the first VIN that breaks the fleet's rule (one msgspec pass over them all)."""
    vins = list(origins)
    try:
        msgspec.convert(vins, list[Vin])
    except msgspec.ValidationError as exc:
        found = _AT_INDEX.search(str(exc))
        assert found is not None  # a list's error always says which item
        bad = vins[int(found[1])]
        shown = bad if len(bad) <= _SHOWN else bad[:_SHOWN] + "..."
        raise ApiError(
            400, "BULK_RECALL_BATCH_INVALID_VIN", f"{origins[bad]}: {_rule(bad)} (got {shown!r})"
        ) from None


def _rule(vin: str) -> str:
    """The fleet's own words for why ``vin`` is refused."""
    try:
        validate(GetCommand(vin=vin))
    except InvalidCommand as exc:
        return exc.errors[0].reason
    return "not a VIN"
