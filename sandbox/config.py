"""How one sandbox is set up: where it listens, the credentials it accepts, its limits, faults and rules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, get_args

from recalls.sandbox.faults import FaultSettings
from recalls.sandbox.state import ConflictRule
from recalls.shared.settings import Settings

DEFAULT_MANUFACTURER = "DVSA Motors"
DEFAULT_TOKEN_TTL = 1199  # seconds: what Azure AD gives DVSA's clients


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """Everything a sandbox needs to start; immutable, so a running sandbox never changes under a test.

    The secret and the API key are left out of ``repr`` so a config can be logged safely.
    """

    client_id: str
    client_secret: str = field(repr=False)
    scope: str
    api_key: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8900  # 0: any free port (the running sandbox reports which)
    rate_limit: int = 25  # admitted requests of one verb in any one-second window
    token_ttl: int = DEFAULT_TOKEN_TTL
    manufacturer: str = DEFAULT_MANUFACTURER
    seed: int | None = None  # fault dice; None: different every run
    faults: FaultSettings = field(default_factory=FaultSettings)
    journal_size: int = 100_000  # requests kept for /__admin/requests; older ones are forgotten
    conflict: ConflictRule = "campaign"  # "vin": any recall of the VIN makes a create 409, as in DVSA's mock

    def __post_init__(self) -> None:
        for name in ("client_id", "client_secret", "scope", "api_key", "manufacturer"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if not 0 <= self.port < 65536:
            raise ValueError("port must be between 0 and 65535")
        if self.rate_limit < 1:
            raise ValueError("rate_limit must be at least 1")
        if self.token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        if self.journal_size < 1:
            raise ValueError("journal_size must be at least 1")
        if self.conflict not in get_args(ConflictRule):
            raise ValueError(f"conflict must be one of {', '.join(get_args(ConflictRule))}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SandboxConfig:
        """The sandbox a fleet with these settings expects: same credentials, rate limit and address."""
        values: dict[str, Any] = {
            "client_id": settings.dvsa_client_id,
            "client_secret": settings.dvsa_client_secret.get_secret_value(),
            "scope": settings.dvsa_scope,
            "api_key": settings.dvsa_api_key.get_secret_value(),
            "host": settings.sandbox_host,
            "port": settings.sandbox_port,
            "rate_limit": settings.rate_limit,
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> SandboxConfig:
        """A copy with some fields changed (tests start variants of one base config)."""
        return dataclasses.replace(self, **changes)
