"""DVSA's rules applied to commands before they are queued, with errors that name the field.

A command DVSA would certainly refuse with 400 is refused here, so it never costs a rate-limited call.
The rules themselves are the ``Meta`` constraints in :mod:`recalls.shared.contracts`; this module runs them on
Structs built in Python and on raw JSON, and turns msgspec's messages into :class:`FieldError` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from recalls.shared.contracts import Command

_decoder = msgspec.json.Decoder(Command)
_AT_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `(?P<field>[^`]+)`")
# msgspec reports a failed pattern as the regex; a publisher wants the rule in words.
_PATTERN_RULES = {
    "vin": "must be 16 or 17 letters and digits",
    "manufacturer_campaign_reference": "must be 1 to 49 letters, digits, _ / \\ or -",
    "dvsa_campaign_reference": "must look like R/2022/123 (letters/4 digits/3 digits)",
}
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidCommand(ValueError):
    """A command that breaks the contract or DVSA's rules; ``errors`` says which field and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


def _field_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> FieldError:
    match = _AT_PATH.match(str(exc))
    assert match is not None  # the pattern matches any text
    path = (match["path"] or "").lstrip(".")
    reason = match["reason"]
    named = _NAMED_FIELD.search(reason)
    if named:
        path = ".".join(filter(None, (path, named["field"])))
    elif not path and reason.endswith("is required"):
        # __post_init__ messages name their own fields first ("x or y is required").
        path = reason.split(" ", 1)[0]
    if "matching regex" in reason and path in _PATTERN_RULES:
        reason = _PATTERN_RULES[path]
    return FieldError(path or "body", reason)


def decode_command(body: bytes) -> Command:
    """Decode and validate a raw message body; raise :class:`InvalidCommand` naming the field."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidCommand([FieldError("body", f"larger than {MAX_BODY_BYTES} bytes")])
    try:
        command = _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidCommand([_field_error(exc)]) from None
    return normalise(command)


def validate(command: Command) -> Command:
    """Check a command built in Python against the contract; return it with its VIN upper-cased."""
    return decode_command(msgspec.json.encode(command))


def normalise(command: Command) -> Command:
    """DVSA treats VINs case-insensitively; the fleet always sends them upper-case."""
    if command.vin.isupper() or command.vin.isdigit():
        return command
    return msgspec.structs.replace(command, vin=command.vin.upper())
