"""The committed JSON Schema files are the code's contract, and they accept and refuse what workers do."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from recalls.cli.schemas import schemas
from recalls.shared.contracts import CreateCommand, DeleteCommand, FixCommand, GetCommand, OutcomeEvent
from recalls.shared.schema_export import DIALECT, SCHEMA_DIR, render_schemas, stale_schemas, write_schemas
from recalls.shared.validation import InvalidCommand, decode_command

VIN = "WAUZZZF49HA036784"
GOOD_COMMANDS: dict[str, Any] = {
    "create": CreateCommand(
        vin=VIN, manufacturer_campaign_reference="ABC1234", recall_campaign_start_date=dt.date(2024, 1, 2)
    ),
    "fix": FixCommand(vin=VIN, dvsa_campaign_reference="R/2022/123", rectification_date=dt.date(2024, 3, 4)),
    "delete": DeleteCommand(vin=VIN, manufacturer_campaign_reference="ABC1234"),
    "get": GetCommand(vin=VIN),
}


def as_json(value: object) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(msgspec.json.encode(value))
    return document


def load(filename: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMA_DIR / filename).read_text(encoding="utf-8"))
    return document


def test_the_committed_schema_files_equal_what_the_code_renders() -> None:
    rendered = render_schemas()
    assert sorted(path.name for path in SCHEMA_DIR.glob("*.json")) == sorted(rendered)
    for filename, text in rendered.items():
        assert (SCHEMA_DIR / filename).read_text(encoding="utf-8") == text, f"{filename} is stale"


def test_each_schema_names_its_dialect_and_title_and_ends_in_a_newline() -> None:
    for text in render_schemas().values():
        document = json.loads(text)
        assert document["$schema"] == DIALECT
        assert document["title"]
        assert text.endswith("}\n")


def test_schemas_check_passes_here_and_fails_listing_stale_files(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(schemas, ["--check"]).exit_code == 0

    (tmp_path / "fix.json").write_text("{}\n", encoding="utf-8")
    stale = runner.invoke(schemas, ["--check", "--directory", str(tmp_path)])
    assert stale.exit_code == 3
    assert stale.stderr.startswith("error: schemas out of date")
    assert "fix.json" in stale.stderr
    assert "outcome-event.json" in stale.stderr

    assert runner.invoke(schemas, ["--directory", str(tmp_path)]).exit_code == 0
    assert stale_schemas(tmp_path) == []
    assert write_schemas(tmp_path) == []  # nothing left to change


@pytest.fixture
def jsonschema() -> Any:
    # jsonschema is not a dev dependency yet; these checks run where it is installed.
    return pytest.importorskip("jsonschema")


@pytest.mark.parametrize("verb", list(GOOD_COMMANDS))
def test_a_good_command_is_valid_under_its_schema_and_the_union(jsonschema: Any, verb: str) -> None:
    instance = as_json(GOOD_COMMANDS[verb])
    for filename in (f"{verb}.json", "command.json"):
        schema = load(filename)
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    "breach",
    [
        {"vin": "SHORT"},
        {"verb": "close"},
        {"colour": "red"},
        {"schema_version": 2},
        {"dvsa_campaign_reference": "R/1"},
        {"vin": "WAUZZZF49HA036784\n"},  # Python's $ matches before a final line break
        {"manufacturer_campaign_reference": "ABC1234\n"},
    ],
)
def test_a_bad_command_is_refused_by_the_schema_as_by_the_decoder(
    jsonschema: Any, breach: dict[str, Any]
) -> None:
    instance = {**as_json(GOOD_COMMANDS["fix"]), **breach}
    with pytest.raises(InvalidCommand):
        decode_command(msgspec.json.encode(instance))
    for filename in ("fix.json", "command.json"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(instance, load(filename), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("verb", list(GOOD_COMMANDS))
@pytest.mark.parametrize("missing", [None, {"manufacturer_campaign_reference": None}])
def test_schema_and_decoder_agree_on_which_verbs_need_a_reference(
    jsonschema: Any, verb: str, missing: dict[str, Any] | None
) -> None:
    instance = as_json(GOOD_COMMANDS[verb])
    instance.pop("dvsa_campaign_reference", None)
    instance.pop("manufacturer_campaign_reference", None)
    instance.update(missing or {})
    try:
        decode_command(msgspec.json.encode(instance))
        decoder_accepts = True
    except InvalidCommand:
        decoder_accepts = False
    schema_accepts = jsonschema.Draft202012Validator(load("command.json")).is_valid(instance)
    assert schema_accepts == decoder_accepts


def test_an_outcome_event_is_valid_under_its_schema(jsonschema: Any) -> None:
    now = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    event = OutcomeEvent(
        message_id="m-1",
        verb="create",
        vin=VIN,
        result="applied",
        attempts=1,
        first_seen_at=now,
        completed_at=now,
    )
    schema = load("outcome-event.json")
    jsonschema.validate(as_json(event), schema, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**as_json(event), "result": "maybe"}, schema, cls=jsonschema.Draft202012Validator
        )
