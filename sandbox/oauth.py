"""The token endpoint, behaving like Azure AD's client-credentials flow as DVSA's clients meet it.

Credentials are accepted only in the form body (client_secret_post), never as HTTP Basic.  Checks run in the
order DVSA's mock runs them (grant_type, client_id, client_secret, scope), then the values are compared
with the configured client.  Errors carry Azure AD's ``error`` names and ``AADSTS`` codes.
"""

from __future__ import annotations

import hmac
import time

from aiohttp import web

from recalls.sandbox.journal import JournalEntry
from recalls.sandbox.responses import (
    AZURE_INVALID_SCOPE,
    AZURE_MISSING_PARAMETER,
    AZURE_MISSING_SECRET,
    AZURE_UNAVAILABLE,
    AZURE_UNKNOWN_CLIENT,
    AZURE_UNSUPPORTED_GRANT,
    AZURE_WRONG_SECRET,
    azure_error,
    json_response,
)
from recalls.sandbox.sandbox import Sandbox

# How the journal names token requests.
TOKEN_VERB = "token"  # noqa: S105 - a label, not a password


def _missing(parameter: str) -> web.Response:
    return azure_error(
        400,
        "invalid_request",
        AZURE_MISSING_PARAMETER,
        f"The request body must contain the following parameter: '{parameter}'.",
    )


class TokenEndpoint:
    """``POST /oauth2/v2.0/token``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def issue(self, request: web.Request) -> web.Response:
        arrival, epoch = time.monotonic(), time.time()
        self._sandbox.stats.token_requests += 1
        response = await self._answer(request, arrival)
        if response.status == 200:
            self._sandbox.stats.tokens_issued += 1
        self._sandbox.journal.record(
            JournalEntry(
                verb=TOKEN_VERB,
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=response.status,
                fault="token_outage" if response.status == 503 else None,
                arrival=epoch,
            )
        )
        return response

    async def _answer(self, request: web.Request, now: float) -> web.Response:
        sandbox = self._sandbox
        if sandbox.faults.outage_remaining(now) > 0:
            return azure_error(
                503,
                "temporarily_unavailable",
                AZURE_UNAVAILABLE,
                "The service is temporarily unavailable. Please try again later.",
            )
        form = await request.post()  # empty unless the body is a form, as Azure requires
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        refusal = _refuse_form(fields, request.headers.get("Authorization", ""))
        if refusal is None:
            refusal = self._refuse_credentials(fields)
        if refusal is not None:
            return refusal
        token = sandbox.tokens.issue(now)
        ttl = sandbox.tokens.ttl
        body = {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token}
        return json_response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _refuse_credentials(self, fields: dict[str, str]) -> web.Response | None:
        config = self._sandbox.config
        if fields["client_id"] != config.client_id:
            return azure_error(
                401,
                "invalid_client",
                AZURE_UNKNOWN_CLIENT,
                f"Application with identifier '{fields['client_id']}' was not found in the directory.",
            )
        if not hmac.compare_digest(fields["client_secret"].encode(), config.client_secret.encode()):
            return azure_error(
                401,
                "invalid_client",
                AZURE_WRONG_SECRET,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                "client secret value, not the client secret ID.",
            )
        if fields["scope"] != config.scope:
            return azure_error(
                400,
                "invalid_scope",
                AZURE_INVALID_SCOPE,
                f"The provided value for the input parameter 'scope' is not valid for this "
                f"client: '{fields['scope']}'.",
            )
        return None


def _refuse_form(fields: dict[str, str], authorization: str) -> web.Response | None:
    """The checks on the form's shape, before any credential is compared."""
    if authorization[:6].lower() == "basic " and not fields.get("client_id"):
        # client_secret_basic: Azure (and DVSA's mock) want the credentials in the body instead.
        return _missing("client_id")
    if not fields.get("grant_type"):
        return _missing("grant_type")
    if not fields.get("client_id"):
        return _missing("client_id")
    if fields["grant_type"] != "client_credentials":
        return azure_error(
            400,
            "unsupported_grant_type",
            AZURE_UNSUPPORTED_GRANT,
            f"The provided value for the input parameter 'grant_type' is not valid: "
            f"'{fields['grant_type']}'. Only client_credentials is supported.",
        )
    if not fields.get("client_secret"):
        return azure_error(
            401,
            "invalid_client",
            AZURE_MISSING_SECRET,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    if not fields.get("scope"):
        return _missing("scope")
    return None
