"""JSON Schema of the wire contract, generated from the msgspec Structs of :mod:`recalls.shared.contracts`.

Enterprise systems publish commands from other languages; these files are the contract they code
against.  They are committed under ``shared/schemas/`` and a test checks that they equal
:func:`render_schemas`, so the documented contract cannot drift from the code that enforces it.
Output is pretty-printed with sorted keys so a change in the contract reads as a small diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from recalls.shared.contracts import (
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    OutcomeEvent,
)

SCHEMA_DIR = Path(__file__).parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_GENERATED = "Generated from shared/contracts.py by `recalls schemas`; do not edit by hand."

# file name -> (title, type)
_DOCUMENTS: dict[str, tuple[str, Any]] = {
    "create.json": ("Recalls create command", CreateCommand),
    "fix.json": ("Recalls fix command", FixCommand),
    "delete.json": ("Recalls delete command", DeleteCommand),
    "get.json": ("Recalls get command", GetCommand),
    "command.json": ("Recalls command (any verb, tagged by verb)", Command),
    "outcome-event.json": ("Recalls outcome event", OutcomeEvent),
}
# msgspec cannot express the __post_init__ rule of these commands (at least one campaign reference),
# so it is added by hand; a test checks that the schema and the decoder agree on it.
_NEEDS_A_REFERENCE = (FixCommand.__name__, DeleteCommand.__name__)
_REFERENCES = ("manufacturer_campaign_reference", "dvsa_campaign_reference")


def schema_of(title: str, type_: Any) -> dict[str, Any]:
    """The JSON Schema document of ``type_``, with its dialect, title and every rule of the decoder."""
    schema = msgspec.json.schema(type_)
    for name, definition in schema.get("$defs", {}).items():
        if name in _NEEDS_A_REFERENCE:
            definition["anyOf"] = [
                {"required": [field], "properties": {field: {"type": "string"}}} for field in _REFERENCES
            ]
    return {"$schema": DIALECT, "title": title, "$comment": _GENERATED, **schema}


def render_schemas() -> dict[str, str]:
    """Every schema file's name and exact text: pretty, key-sorted JSON ending in a newline."""
    return {
        filename: json.dumps(schema_of(title, type_), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for filename, (title, type_) in _DOCUMENTS.items()
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write the schema files into ``directory``; return the names of those that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = stale_schemas(directory)
    rendered = render_schemas()
    for filename in changed:
        (directory / filename).write_text(rendered[filename], encoding="utf-8")
    return changed


def stale_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or differ from the code."""
    return [
        filename
        for filename, text in render_schemas().items()
        if not (directory / filename).is_file() or (directory / filename).read_text(encoding="utf-8") != text
    ]
