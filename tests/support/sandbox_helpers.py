"""Helpers for tests that run against the sandbox (its own and the fleet's); not shipped with it.

Throwaway credentials and a config that listens on a free loopback port, valid sample recalls, the token
form, and checks for DVSA's and Azure AD's error bodies.  Nothing here is used by the sandbox itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recalls.sandbox.config import SandboxConfig

if TYPE_CHECKING:
    import httpx  # the tests' client; the sandbox extra does not bring it

CLIENT_ID = "sandbox-test-client"
CLIENT_SECRET = "sandbox-test-secret"
SCOPE = "api://sandbox-test/.default"
API_KEY = "sandbox-test-api-key"
TOKEN_PATH = "/oauth2/v2.0/token"

VIN = "WAUZZZF49HA036784"
VIN_16 = "SAJAC05P5VD12345"  # older, non-ISO vehicles have 16-character VINs
MANUFACTURER_REF = "ABC-123/X_1"
DVSA_REF = "R/2022/123"
START_DATE = "2022-08-07"


def throwaway_config(**overrides: Any) -> SandboxConfig:
    """A sandbox on a free loopback port with this module's credentials and a fixed fault seed."""
    base = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scope=SCOPE,
        api_key=API_KEY,
        host="127.0.0.1",
        port=0,
        seed=20240101,
    )
    return base.replace(**overrides)


def token_form(**changes: str | None) -> dict[str, str]:
    """A valid token request form; a change to ``None`` leaves that field out."""
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": SCOPE,
    }
    form.update(changes)
    return {name: value for name, value in form.items() if value is not None}


def api_headers(token: str, api_key: str = API_KEY) -> dict[str, str]:
    """The headers DVSA wants on every API call."""
    return {"Authorization": f"Bearer {token}", "x-api-key": api_key}


def recall(**changes: Any) -> dict[str, Any]:
    """A valid create body; a change to ``None`` leaves that field out."""
    body: dict[str, Any] = {
        "vin": VIN,
        "manufacturerCampaignReference": MANUFACTURER_REF,
        "dvsaCampaignReference": DVSA_REF,
        "recallCampaignStartDate": START_DATE,
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def assert_dvsa_error(response: httpx.Response, status: int, code: str) -> str:
    """Check DVSA's error body (status, errorCode, a request id) and return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert body["errorCode"] == code
    assert isinstance(body["requestId"], str) and body["requestId"]
    message = body["errorMessage"]
    assert isinstance(message, str) and message
    return message


def assert_azure_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Check an Azure AD token error body (status, error name, AADSTS code) and return it."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert {"error_description", "error_codes", "timestamp", "trace_id", "correlation_id"} <= set(body)
    assert body["error_codes"] and all(isinstance(code, int) for code in body["error_codes"])
    assert str(body["error_description"]).startswith(f"AADSTS{body['error_codes'][0]}:")
    return body
