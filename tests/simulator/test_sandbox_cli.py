"""``recalls simulator`` as a process: announces its URL, serves, stops cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from recalls.cli.simulator import simulator
from tests.support.sandbox_helpers import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    SCOPE,
    TOKEN_PATH,
    VIN,
    api_headers,
    recall,
    token_form,
)

START_TIMEOUT_SECONDS = 20.0
ANNOUNCEMENT = "DVSA sandbox listening on "
CREDENTIAL_FLAGS = [
    f"--client-id={CLIENT_ID}",
    f"--client-secret={CLIENT_SECRET}",
    f"--scope={SCOPE}",
    f"--api-key={API_KEY}",
]


@dataclass
class Started:
    process: asyncio.subprocess.Process
    url: str


def clean_environment(**variables: str) -> dict[str, str]:
    """This environment without any RECALLS_* variable, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RECALLS_")}
    return env | variables


async def spawn(args: list[str], cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from recalls.cli.simulator import simulator; simulator()",
        *args,
        cwd=cwd,  # away from the repository, so no stray .env is read
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@asynccontextmanager
async def started(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> AsyncIterator[Started]:
    process = await spawn(["--port=0", *args], cwd, env or clean_environment())
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
        text = line.decode()
        assert text.startswith(ANNOUNCEMENT), text
        yield Started(process, text.removeprefix(ANNOUNCEMENT).strip())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop(process: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT_SECONDS)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serves_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    async with started(CREDENTIAL_FLAGS, tmp_path) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert not sandbox.url.endswith(":0")
        async with httpx.AsyncClient(base_url=sandbox.url) as client:
            token = (await client.post(TOKEN_PATH, data=token_form())).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "x-api-key": API_KEY}
            response = await client.get(f"/recalls/vin/{VIN}", headers=headers)
            assert response.status_code == 404
        code, stderr = await stop(sandbox.process, signum)
    assert code == 0
    assert CLIENT_SECRET not in stderr and API_KEY not in stderr


async def test_credentials_default_to_the_fleet_settings(tmp_path: Path) -> None:
    env = clean_environment(
        RECALLS_DVSA_CLIENT_ID="env-client",
        RECALLS_DVSA_CLIENT_SECRET="env-secret",
        RECALLS_DVSA_SCOPE="api://env/.default",
        RECALLS_DVSA_API_KEY="env-api-key-1234",
        RECALLS_RATE_LIMIT="2",
    )
    async with started(["--error-rate=0"], tmp_path, env) as sandbox:
        async with httpx.AsyncClient(base_url=sandbox.url) as client:
            form = {
                "grant_type": "client_credentials",
                "client_id": "env-client",
                "client_secret": "env-secret",
                "scope": "api://env/.default",
            }
            token = (await client.post(TOKEN_PATH, data=form)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "x-api-key": "env-api-key-1234"}
            statuses = [
                (await client.get(f"/recalls/vin/{VIN}", headers=headers)).status_code for _ in range(3)
            ]
            assert statuses == [404, 404, 429]  # RECALLS_RATE_LIMIT=2
        code, _ = await stop(sandbox.process, signal.SIGTERM)
    assert code == 0


async def test_fault_flags_apply_from_the_start(tmp_path: Path) -> None:
    args = [*CREDENTIAL_FLAGS, "--error-rate=1", "--seed=3", "--latency-ms=1", "--journal-size=2"]
    async with started(args, tmp_path) as sandbox:
        async with httpx.AsyncClient(base_url=sandbox.url) as client:
            token = (await client.post(TOKEN_PATH, data=token_form())).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "x-api-key": API_KEY}
            statuses = [
                (await client.get(f"/recalls/vin/{VIN}", headers=headers)).status_code for _ in range(3)
            ]
            assert set(statuses) <= {500, 503}
            faults = (await client.get("/__admin/faults")).json()
            assert (faults["error_rate"], faults["latency_ms"]) == (1.0, 1.0)
            assert len((await client.get("/__admin/requests")).json()) == 2  # --journal-size
        code, _ = await stop(sandbox.process, signal.SIGTERM)
    assert code == 0


async def test_conflict_vin_refuses_a_second_campaign_on_a_known_vin(tmp_path: Path) -> None:
    async with started([*CREDENTIAL_FLAGS, "--conflict", "vin"], tmp_path) as sandbox:
        async with httpx.AsyncClient(base_url=sandbox.url) as client:
            token = (await client.post(TOKEN_PATH, data=token_form())).json()["access_token"]
            first = await client.post("/recalls", json=recall(), headers=api_headers(token))
            assert first.status_code == 201
            second = recall(manufacturerCampaignReference="OTHER-1", dvsaCampaignReference=None)
            response = await client.post("/recalls", json=second, headers=api_headers(token))
            assert response.status_code == 409
            assert response.json()["errorCode"] == "RECALLS-CF-01"
        code, _ = await stop(sandbox.process, signal.SIGTERM)
    assert code == 0


def test_an_unknown_conflict_rule_is_a_usage_error() -> None:
    result = CliRunner().invoke(simulator, [*CREDENTIAL_FLAGS, "--conflict", "bogus"])
    assert result.exit_code == 2
    assert "--conflict" in result.output
    assert "'bogus' is not one of" in result.output


async def test_bad_settings_exit_2_with_the_message(tmp_path: Path) -> None:
    process = await spawn(["--port=0"], tmp_path, clean_environment(RECALLS_RATE_LIMIT="0"))
    stdout, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT_SECONDS)
    assert process.returncode == 2
    assert "RECALLS_RATE_LIMIT" in stderr.decode()
    assert stdout == b""


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    async with started(CREDENTIAL_FLAGS, tmp_path) as first:
        port = first.url.rsplit(":", 1)[1]
        process = await spawn([f"--port={port}", *CREDENTIAL_FLAGS], tmp_path, clean_environment())
        _, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT_SECONDS)
        assert process.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in stderr.decode()
        await stop(first.process, signal.SIGTERM)


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(simulator, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--host",
        "--port",
        "--rate-limit",
        "--token-ttl",
        "--client-id",
        "--client-secret",
        "--scope",
        "--api-key",
        "--manufacturer",
        "--seed",
        "--error-rate",
        "--latency-ms",
        "--timeout-rate",
        "--hang-seconds",
        "--drop-rate",
        "--storm-seconds",
        "--token-outage-seconds",
        "--journal-size",
        "--conflict",
    ):
        assert flag in result.output


def test_out_of_range_fault_flags_are_usage_errors() -> None:
    result = CliRunner().invoke(simulator, [*CREDENTIAL_FLAGS, "--error-rate=2"])
    assert result.exit_code == 2
    assert "--error-rate" in result.output
