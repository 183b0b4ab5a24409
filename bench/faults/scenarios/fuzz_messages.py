"""Raw messages for the bad_input scenario: bad bodies and odd headers, published straight to the queues.

Each case is one bad message (arbitrary bytes, JSON of the wrong shape, a command with one bad field,
a command in another encoding) with odd headers and properties, plus the odd headers of the GOOD
command published just before it.  A bad message must reach the dead-letter queue with an ``x-reason``
that names the bad field (when there is one to name); a good command must be applied whatever its
headers say, since nothing a message carries may crash a worker or lose a command.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from bench.faults.scenarios import fuzz
from recalls.shared.contracts import VERBS
from recalls.shared.topology import LANES, routing_key

ROUTING_KEYS = [routing_key(verb, lane) for verb in VERBS for lane in LANES]
KNOWN_FIELDS = {
    "verb", "schema_version", "message_id", "correlation_id", "issued_at", "vin", "rectification_date",
    "manufacturer_campaign_reference", "dvsa_campaign_reference", "recall_campaign_start_date",
    "repair_status",
}  # fmt: skip
DATE_FIELD = {"create": "recall_campaign_start_date", "fix": "rectification_date"}
MAX_BODY = 64 * 1024  # the fleet's limit on a command's body (docs/contract.md)
Json = dict[str, Any]


@dataclass(frozen=True)
class RawCase:
    """One bad message as published, the field its dead letter must name, and the headers of the good one."""

    kind: str
    body: bytes
    routing_key: str
    names: str  # "" when any reason will do (the body is not a command at all)
    headers: dict[str, Any] = field(repr=False)
    properties: dict[str, Any] = field(repr=False)
    good_headers: dict[str, Any] = field(repr=False)

    def shown(self) -> str:
        """The case in a few words, for a problem report."""
        return f"{self.kind} on {self.routing_key}: {self.body[:120]!r}"


def kinds() -> list[str]:
    """The kinds of bad body, each drawn on its own so that every run meets every kind."""
    return ["bytes", "shape", "encoding", *_spoilers()]


def cases(kind: str) -> st.SearchStrategy[RawCase]:
    """Bad messages of one kind (see :func:`kinds`), each with the odd headers of its good companion."""
    return st.builds(
        lambda body, key, headers, properties, good: RawCase(
            body[0], body[1], key, body[2], headers, properties, good
        ),
        _bodies(kind),
        st.sampled_from(ROUTING_KEYS),
        odd_headers(),
        _properties(),
        odd_headers(),
    )


def odd_headers() -> st.SearchStrategy[dict[str, Any]]:
    """Headers a worker reads (x-attempts, x-history, ...) with values of any type, others, and at times
    a huge x-history (kept under RabbitMQ's frame size: a header frame cannot be split)."""
    names = st.sampled_from(
        ["x-attempts", "x-first-seen", "x-history", "x-last-error", "x-maybe-applied", "x-reason",
         "x-routing-key", "x-dead-at", "x-junk", "x-\u00e9t\u00e9"]
    )  # fmt: skip
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(width=32, allow_nan=False, allow_infinity=False),  # pamqp sends a float as a 32-bit one
        st.text(max_size=40),
        st.binary(max_size=40).map(bytearray),  # an AMQP byte array
        _not_utf8(),  # an AMQP long string that is not UTF-8
    )
    odd = st.dictionaries(names, scalars | st.lists(scalars, max_size=5), max_size=4)
    huge = st.integers(200, 1500).map(lambda n: [f"attempt {i}: 503 Service Unavailable" for i in range(n)])
    return st.builds(
        lambda headers, history: headers | history, odd, st.just({}) | huge.map(lambda h: {"x-history": h})
    )


class RawText(str):
    """Text sent as raw bytes that are not UTF-8: pamqp encodes each string it sends with ``encode``."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawText:
        text = super().__new__(cls, raw.decode("latin-1"))
        text.raw = raw
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def _not_utf8() -> st.SearchStrategy[RawText]:
    return st.binary(max_size=30).map(lambda tail: RawText(b"\xff\xfe" + tail))


def _properties() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "content_type": st.sampled_from(["application/json", "text/plain", "application/octet-stream"]),
            "correlation_id": st.text(max_size=40),
            "type": st.text(max_size=20),
        },
    )


def _arbitrary_bytes() -> st.SearchStrategy[tuple[str, bytes, str]]:
    return st.binary(max_size=300).map(lambda body: ("bytes", body, ""))


def _wrong_shapes() -> st.SearchStrategy[tuple[str, bytes, str]]:
    """JSON that is not a command: no verb one of the four, or not an object at all."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    )
    return values.filter(lambda v: not (isinstance(v, dict) and v.get("verb") in VERBS)).map(
        lambda value: ("shape", json.dumps(value).encode(), "")
    )


def _other_encodings() -> st.SearchStrategy[tuple[str, bytes, str]]:
    """A valid command in UTF-16 or UTF-32, which JSON on the wire (UTF-8) does not allow."""
    return st.tuples(_valid_bodies(), st.sampled_from(["utf-16", "utf-32"])).map(
        lambda pair: (f"encoding {pair[1]}", json.dumps(pair[0]).encode(pair[1]), "")
    )


def _valid_bodies() -> st.SearchStrategy[Json]:
    return st.sampled_from(VERBS).flatmap(valid_body)


def valid_body(verb: str) -> st.SearchStrategy[Json]:
    """A command body of ``verb`` that the contract accepts."""
    reference = {"manufacturer_campaign_reference": fuzz.manufacturer_references()}
    required: dict[str, st.SearchStrategy[Any]] = {"verb": st.just(verb), "vin": fuzz.vins()}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "dvsa_campaign_reference": fuzz.dvsa_references(),
        "correlation_id": st.text(max_size=20),
        "message_id": st.uuids().map(str),
    }
    dates = fuzz.dates().map(lambda day: day.isoformat())
    if verb == "create":
        required |= reference | {"recall_campaign_start_date": dates}
    elif verb == "fix":
        required |= reference | {
            "rectification_date": dates,
            "repair_status": st.sampled_from(["FIXED", "NOT_FIXED"]),
        }
    elif verb == "delete":
        required |= reference
    else:
        optional |= reference
    return st.fixed_dictionaries(required, optional=optional)


def _bodies(kind: str) -> st.SearchStrategy[tuple[str, bytes, str]]:
    whole = {"bytes": _arbitrary_bytes, "shape": _wrong_shapes, "encoding": _other_encodings}
    return whole[kind]() if kind in whole else _spoiled_body(kind)


def _spoiled_body(kind: str) -> st.SearchStrategy[tuple[str, bytes, str]]:
    """A valid command with exactly one thing wrong with it (``kind``), and the field its refusal names."""
    verbs = {"date": ["create", "fix"], "repair_status": ["fix"], "no reference": ["fix", "delete"]}
    bodies = st.sampled_from(verbs.get(kind, VERBS)).flatmap(valid_body)
    return bodies.flatmap(_spoilers()[kind])


def _replaced(name: str, values: st.SearchStrategy[Any]) -> Spoiler:
    def spoil(body: Json) -> st.SearchStrategy[tuple[str, bytes, str]]:
        return values.map(lambda value: (name, json.dumps({**body, name: value}).encode(), name))

    return spoil


def _date(body: Json) -> st.SearchStrategy[tuple[str, bytes, str]]:
    return _replaced(DATE_FIELD[body["verb"]], st.integers() | st.none() | fuzz.not_dates())(body)


def _bad_vins() -> st.SearchStrategy[Any]:
    return st.one_of(
        fuzz.vins().map(lambda vin: vin[:16] + "\n"),  # Python's "$" matches before a final line break
        st.text(fuzz.VIN_LETTERS, max_size=15),
        st.text(fuzz.VIN_LETTERS, min_size=18, max_size=40),
        fuzz.spoiled(fuzz.vins()),
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=3),
    )


def _bad_manufacturer_references() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(""),
        fuzz.manufacturer_references().map(lambda reference: reference + "\n"),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=50, max_size=80),
        fuzz.spoiled(fuzz.manufacturer_references()),
        st.integers(),
    )


def _bad_dvsa_references() -> st.SearchStrategy[Any]:
    near_misses = st.sampled_from(
        ["R-2025-101", "R/25/101", "R/2025/1011", "/2025/101", "R/2025/10", "1/2025/101"]
    )
    return st.one_of(near_misses, fuzz.spoiled(fuzz.dvsa_references()), st.integers())


def _unknown_field(body: Json) -> st.SearchStrategy[tuple[str, bytes, str]]:
    names = st.text(min_size=1, max_size=20).filter(lambda name: name not in KNOWN_FIELDS)
    return st.tuples(names, st.integers() | st.text(max_size=10)).map(
        lambda pair: ("unknown field", json.dumps({**body, pair[0]: pair[1]}).encode(), pair[0])
    )


def _missing_field(body: Json) -> st.SearchStrategy[tuple[str, bytes, str]]:
    """A required field left out."""
    required = ["verb", "vin", *(name for name in DATE_FIELD.values() if name in body)]
    if body["verb"] == "create":
        required.append("manufacturer_campaign_reference")
    return st.sampled_from(required).map(lambda name: ("missing field", _without(body, {name}), name))


def _no_reference(body: Json) -> st.SearchStrategy[tuple[str, bytes, str]]:
    """A fix or delete with neither campaign reference (one of the two is required)."""
    both = {"manufacturer_campaign_reference", "dvsa_campaign_reference"}
    return st.just(("no reference", _without(body, both), "campaign_reference"))


def _without(body: Json, names: set[str]) -> bytes:
    return json.dumps({key: value for key, value in body.items() if key not in names}).encode()


def _huge(body: Json) -> st.SearchStrategy[tuple[str, bytes, str]]:
    """A body over the size limit (a correlation id of any length is otherwise allowed)."""
    return st.integers(MAX_BODY, 3 * MAX_BODY).map(
        lambda size: ("huge", json.dumps({**body, "correlation_id": "x" * size}).encode(), "body")
    )


def _not_a_time(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return True
    return False


def unnamed(cases: Sequence[RawCase], reasons: Mapping[int, str]) -> list[str]:
    """The cases whose dead letter's reason does not name the field that is wrong (index -> reason);
    DVSA's spelling of a field (manufacturerCampaignReference) names it too."""
    return [
        f"{case.shown()} -> {reasons[index]!r}"
        for index, case in enumerate(cases)
        if index in reasons
        and case.names
        and case.names not in reasons[index]
        and _camel(case.names) not in reasons[index]
    ]


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


Spoiler = Callable[[Json], st.SearchStrategy[tuple[str, bytes, str]]]


def _spoilers() -> dict[str, Spoiler]:
    """Each kind of spoiled command: a spoiler takes a valid body and draws it with that one fault."""
    return {
        "vin": _replaced("vin", _bad_vins()),
        "manufacturer_campaign_reference": _replaced(
            "manufacturer_campaign_reference", _bad_manufacturer_references()
        ),
        "dvsa_campaign_reference": _replaced("dvsa_campaign_reference", _bad_dvsa_references()),
        "schema_version": _replaced("schema_version", st.sampled_from([0, 2, "1", None, 1.5])),
        "message_id": _replaced("message_id", st.just("") | st.text(min_size=129, max_size=200)),
        "issued_at": _replaced("issued_at", st.integers() | st.text(max_size=30).filter(_not_a_time)),
        "verb": _replaced("verb", st.integers() | st.text(max_size=10).filter(lambda v: v not in VERBS)),
        "repair_status": _replaced(
            "repair_status", st.text(max_size=12).filter(lambda v: v not in ("FIXED", "NOT_FIXED"))
        ),
        "date": _date,
        "unknown field": _unknown_field,
        "missing field": _missing_field,
        "no reference": _no_reference,
        "huge": _huge,
    }
