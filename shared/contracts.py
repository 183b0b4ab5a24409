"""The wire contract: one JSON command per verb, and the outcome event the fleet reports for each.

Commands are msgspec Structs tagged by ``verb``, so one decoder reads any of them and publishers in other
languages can follow the JSON Schema generated from these classes (``shared/schemas/``).  Field
constraints live here as ``Meta`` annotations so that the schema and the validation are one thing.
Python callers build Structs directly; :func:`recalls.shared.validation.validate` checks them before
publishing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION: Literal[1] = 1

Verb = Literal["create", "fix", "delete", "get"]
VERBS: tuple[Verb, ...] = ("create", "fix", "delete", "get")

# (?!\n) before $: Python's $ also matches before a final line break, which JSON Schema's does not.
Vin = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9]{16,17}(?!\n)$",
        description="Vehicle Identification Number: 16 or 17 letters and digits "
        "(DVSA accepts 16-character VINs of older vehicles).",
        examples=["WAUZZZF49HA036784"],
    ),
]
ManufacturerReference = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_/\\-]{1,49}(?!\n)$",
        description="The manufacturer's campaign reference: letters, digits, _ / \\ -, under 50 long.",
        examples=["ABC1234"],
    ),
]
DvsaReference = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z]+/[0-9]{4}/[0-9]{3}(?!\n)$",
        description="DVSA's campaign reference, such as R/2022/123.",
        examples=["R/2022/123"],
    ),
]
Timestamp = Annotated[
    dt.datetime,
    msgspec.Meta(
        tz=True,
        extra_json_schema={"format": "date-time"},
        description="RFC 3339 date and time, with its offset.",
    ),
]
RepairStatus = Literal["FIXED", "NOT_FIXED"]
MessageId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        description="Idempotency key: the same command published twice carries the same id.",
    ),
]


def new_message_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Command(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="verb"):
    """Fields every command carries."""

    schema_version: Literal[1] = SCHEMA_VERSION
    message_id: MessageId = msgspec.field(default_factory=new_message_id)
    correlation_id: str | None = None
    issued_at: Timestamp = msgspec.field(default_factory=utc_now)
    vin: Vin

    @property
    def verb(self) -> Verb:
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag  # type: ignore[return-value]


class _Targeted(_Command, kw_only=True):
    """A command that names one recall campaign of a vehicle, by either reference."""

    manufacturer_campaign_reference: ManufacturerReference | None = None
    dvsa_campaign_reference: DvsaReference | None = None

    def __post_init__(self) -> None:
        if self.manufacturer_campaign_reference is None and self.dvsa_campaign_reference is None:
            raise ValueError("manufacturer_campaign_reference or dvsa_campaign_reference is required")


class CreateCommand(_Command, kw_only=True, tag="create"):
    """Open a recall for one vehicle (DVSA ``POST /recalls``)."""

    manufacturer_campaign_reference: ManufacturerReference
    dvsa_campaign_reference: DvsaReference | None = None
    recall_campaign_start_date: dt.date


class FixCommand(_Targeted, kw_only=True, tag="fix"):
    """Mark a vehicle's recall fixed, or re-open it with NOT_FIXED (DVSA ``PUT /recalls/vin/{vin}``)."""

    rectification_date: dt.date
    repair_status: RepairStatus = "FIXED"


class DeleteCommand(_Targeted, kw_only=True, tag="delete"):
    """Delete a recall added in error (DVSA ``DELETE /recalls/vin/{vin}``); fixed recalls cannot be."""


class GetCommand(_Command, kw_only=True, tag="get"):
    """Read what DVSA holds for a vehicle, optionally for one campaign (DVSA ``GET``)."""

    manufacturer_campaign_reference: ManufacturerReference | None = None
    dvsa_campaign_reference: DvsaReference | None = None


Command = CreateCommand | FixCommand | DeleteCommand | GetCommand
COMMAND_TYPES: dict[Verb, type[Command]] = {
    "create": CreateCommand,
    "fix": FixCommand,
    "delete": DeleteCommand,
    "get": GetCommand,
}

Result = Literal["applied", "already_applied", "failed"]
Lane = Literal["live", "bulk", "background"]


class Recall(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One recall of a vehicle as DVSA reports it."""

    manufacturer_campaign_reference: str
    dvsa_campaign_reference: str | None = None
    recall_campaign_start_date: str | None = None
    repair_status: str | None = None


class OutcomeEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What became of one command; published to ``<prefix>.events`` and to the command's reply_to."""

    schema_version: Literal[1] = SCHEMA_VERSION
    message_id: str
    correlation_id: str | None = None
    verb: Verb
    vin: str
    manufacturer_campaign_reference: str | None = None
    dvsa_campaign_reference: str | None = None
    result: Result
    dvsa_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    reason: str | None = None
    attempts: int
    issued_at: Timestamp | None = None
    first_seen_at: Timestamp
    completed_at: Timestamp
    dvsa_ms: float | None = None
    manufacturer: str | None = None
    recalls: list[Recall] | None = None
    lane: Lane = "live"
    # The command's dates, so that subscribers (the ledger) know what DVSA now holds.
    recall_campaign_start_date: dt.date | None = None
    rectification_date: dt.date | None = None
    repair_status: RepairStatus | None = None


_EVENT_DECODER = msgspec.json.Decoder(OutcomeEvent)


def decode_event(body: bytes) -> OutcomeEvent:
    """An outcome event from its JSON body; raises ``msgspec.DecodeError`` (or its ValidationError)."""
    return _EVENT_DECODER.decode(body)
