"""DVSA's rules as a publisher meets them: every refusal names the field (no services needed)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from recalls.cli.publish import publish
from recalls.shared.contracts import CreateCommand, FixCommand, GetCommand
from recalls.shared.validation import InvalidCommand, decode_command, validate

VIN = "WAUZZZF49HA036784"
REFERENCES = {"manufacturer_campaign_reference", "dvsa_campaign_reference"}


def body(verb: str, **fields: Any) -> bytes:
    defaults: dict[str, dict[str, Any]] = {
        "create": {"manufacturer_campaign_reference": "ABC1234", "recall_campaign_start_date": "2024-01-02"},
        "fix": {"dvsa_campaign_reference": "R/2022/123", "rectification_date": "2024-03-04"},
        "delete": {"manufacturer_campaign_reference": "ABC1234"},
        "get": {},
    }
    document = {"verb": verb, "vin": VIN, **defaults[verb], **fields}
    return msgspec.json.encode({key: value for key, value in document.items() if value is not None})


def refused_field(raw: bytes) -> str:
    with pytest.raises(InvalidCommand) as caught:
        decode_command(raw)
    assert len(caught.value.errors) == 1
    return caught.value.errors[0].field


@pytest.mark.parametrize("vin", ["WAUZZZF49HA03678", VIN, "wauzzzf49ha036784"])
def test_vins_of_16_or_17_letters_and_digits_are_accepted_and_upper_cased(vin: str) -> None:
    assert decode_command(body("get", vin=vin)).vin == vin.upper()


@pytest.mark.parametrize(
    "vin",
    [
        "WAUZZZF49HA0367",
        "WAUZZZF49HA0367845",
        "WAUZZZF49HA03678!",
        "WAUZZZF49 HA03678",
        "WAUZZZF49HA03678Ö",
        "",
    ],
)
def test_other_vins_are_refused_naming_vin(vin: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        decode_command(body("get", vin=vin))
    assert [str(error) for error in caught.value.errors] == ["vin: must be 16 or 17 letters and digits"]


@pytest.mark.parametrize("reference", ["A", "a_b/c\\d-1", "X" * 49])
def test_manufacturer_references_within_the_rule_are_accepted(reference: str) -> None:
    decode_command(body("create", manufacturer_campaign_reference=reference))


@pytest.mark.parametrize("reference", ["", "X" * 50, "ABC 123", "ABC.123", "ABC#1"])
def test_other_manufacturer_references_are_refused(reference: str) -> None:
    assert refused_field(body("create", manufacturer_campaign_reference=reference)) == (
        "manufacturer_campaign_reference"
    )


@pytest.mark.parametrize("reference", ["R/2022/123", "RM/1999/001"])
def test_dvsa_references_like_r_2022_123_are_accepted(reference: str) -> None:
    decode_command(body("fix", dvsa_campaign_reference=reference))


@pytest.mark.parametrize("reference", ["R/22/123", "R/2022/12", "2022/123", "R-2022-123", "R/2022/1234"])
def test_other_dvsa_references_are_refused(reference: str) -> None:
    assert refused_field(body("fix", dvsa_campaign_reference=reference)) == "dvsa_campaign_reference"


@pytest.mark.parametrize(
    ("verb", "field", "value"),
    [
        ("create", "recall_campaign_start_date", "2024-02-30"),
        ("create", "recall_campaign_start_date", "02/01/2024"),
        ("fix", "rectification_date", "2023-02-29"),
        ("fix", "rectification_date", "2024-13-01"),
    ],
)
def test_impossible_dates_are_refused_naming_the_date(verb: str, field: str, value: str) -> None:
    assert refused_field(body(verb, **{field: value})) == field


def test_a_leap_day_is_a_date() -> None:
    command = decode_command(body("fix", rectification_date="2024-02-29"))
    assert isinstance(command, FixCommand)
    assert command.rectification_date == dt.date(2024, 2, 29)


@pytest.mark.parametrize("verb", ["fix", "delete"])
def test_fix_and_delete_need_a_campaign_reference(verb: str) -> None:
    raw = body(verb, manufacturer_campaign_reference=None, dvsa_campaign_reference=None)
    with pytest.raises(InvalidCommand) as caught:
        decode_command(raw)
    (error,) = caught.value.errors
    assert error.field in REFERENCES
    assert "required" in error.reason


@pytest.mark.parametrize("reference", ["manufacturer_campaign_reference", "dvsa_campaign_reference"])
def test_either_reference_is_enough_for_a_fix(reference: str) -> None:
    values = {"manufacturer_campaign_reference": "ABC1234", "dvsa_campaign_reference": "R/2022/123"}
    others = {name: None for name in REFERENCES - {reference}}
    decode_command(body("fix", **{reference: values[reference]}, **others))


def test_get_needs_no_reference() -> None:
    decode_command(body("get"))


def test_create_needs_the_manufacturer_reference() -> None:
    assert refused_field(body("create", manufacturer_campaign_reference=None)) == (
        "manufacturer_campaign_reference"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("repair_status", "BROKEN"), ("message_id", ""), ("schema_version", 2), ("colour", "red")],
)
def test_other_contract_breaches_name_their_field(field: str, value: object) -> None:
    assert refused_field(body("fix", **{field: value})) == field


def test_structs_built_in_python_are_checked_too() -> None:
    with pytest.raises(InvalidCommand, match="vin: must be 16 or 17"):
        validate(GetCommand(vin="SHORT"))
    command = CreateCommand(
        vin="wauzzzf49ha036784",
        manufacturer_campaign_reference="ABC1",
        recall_campaign_start_date=dt.date(2024, 1, 2),
    )
    assert validate(command).vin == VIN


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["create", "--vin", "SHORT", "--manufacturer-ref", "ABC1", "--start-date", "2024-01-02"],
            "error: vin: must be 16 or 17 letters and digits",
        ),
        (
            ["create", "--vin", VIN, "--manufacturer-ref", "ABC1", "--start-date", "2024-02-30"],
            "error: recall_campaign_start_date: ",
        ),
        (["fix", "--vin", VIN], "error: manufacturer_campaign_reference: "),
        (["delete", "--vin", VIN, "--dvsa-ref", "R/22/1"], "error: dvsa_campaign_reference: must look like"),
    ],
)
def test_the_cli_refuses_bad_input_with_one_line_and_exit_2_before_connecting(
    arguments: list[str], message: str
) -> None:
    # The broker URL points nowhere: input errors must be reported without trying to connect.
    env = {"RECALLS_AMQP_URL": "amqp://guest:secretpw@127.0.0.1:1/"}
    result = CliRunner().invoke(publish, arguments, env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_the_cli_reports_bad_settings_with_exit_2() -> None:
    arguments = ["get", "--vin", VIN]
    result = CliRunner().invoke(publish, arguments, env={"RECALLS_PREFIX": "no spaces allowed"})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid configuration:")
    assert "RECALLS_PREFIX" in result.stderr
