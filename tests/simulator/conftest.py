"""Fixtures for the sandbox tests: a sandbox on a free loopback port, an HTTP client, a valid token.

A test changes the sandbox's configuration by parametrizing ``overrides``, e.g.
``@pytest.mark.parametrize("overrides", [{"token_ttl": 1}])``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from recalls.sandbox.config import SandboxConfig
from recalls.sandbox.server import RunningSandbox, running_sandbox
from tests.support.sandbox_helpers import TOKEN_PATH, api_headers, throwaway_config, token_form


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def config(overrides: dict[str, Any]) -> SandboxConfig:
    return throwaway_config(**overrides)


@pytest.fixture
async def sandbox(config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    async with running_sandbox(config) as running:
        yield running


@pytest.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10.0, limits=limits) as http:
        yield http


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    response = await client.post(TOKEN_PATH, data=token_form())
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    """Headers that DVSA accepts on an API call."""
    return api_headers(token)
