"""Fault injection: which failures the sandbox plays, and the seeded dice that decide each call's fate.

Rates are shares of API calls (0 to 1).  ``storm_seconds`` and ``token_outage_seconds`` are durations that
start when they are set, so the admin API and the CLI can switch a storm on for a while without having to
switch it off again.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

# Upper bounds keep a typo (latency_ms=5000000) from wedging a test run for days.
_LIMITS: dict[str, float] = {
    "error_rate": 1.0,
    "latency_ms": 60_000.0,
    "timeout_rate": 1.0,
    "hang_seconds": 3_600.0,
    "drop_rate": 1.0,
    "storm_seconds": 86_400.0,
    "token_outage_seconds": 86_400.0,
}


class FaultSettingsError(ValueError):
    """A fault setting is unknown or out of range; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The faults in force.  All zero (but the hang length) means a well-behaved DVSA."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_rate: float = 0.0
    storm_seconds: float = 0.0
    token_outage_seconds: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_value(field.name, getattr(self, field.name))

    def updated(self, changes: Mapping[str, object]) -> FaultSettings:
        """A copy with ``changes`` applied; raises :class:`FaultSettingsError` naming a bad field."""
        known = {field.name for field in dataclasses.fields(self)}
        values: dict[str, float] = {}
        for name, value in changes.items():
            if name not in known:
                raise FaultSettingsError(name, f"unknown fault (known: {', '.join(sorted(known))})")
            values[name] = _check_value(name, value)
        return dataclasses.replace(self, **values)


def _check_value(name: str, value: object) -> float:
    # bool is an int in Python, but "error_rate": true is a client bug worth naming.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultSettingsError(name, "must be a number")
    limit = _LIMITS[name]
    if not math.isfinite(value) or not 0 <= value <= limit:
        raise FaultSettingsError(name, f"must be between 0 and {limit:g}")
    return float(value)


class Fault(enum.Enum):
    """What happens to one API call."""

    NONE = "none"
    DROP = "drop"
    ERROR_500 = "error500"
    ERROR_503 = "error503"
    TIMEOUT = "timeout"


class FaultInjector:
    """Holds the fault settings in force and rolls the dice for each call.

    Times are ``time.monotonic()`` readings passed in by the caller, so the injector itself never reads a
    clock and its arithmetic can be tested without waiting.
    """

    def __init__(self, settings: FaultSettings, seed: int | None, now: float) -> None:
        self._seed = seed
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not cryptography
        self._settings = settings
        self._storm_until = now + settings.storm_seconds
        self._outage_until = now + settings.token_outage_seconds

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, changes: Mapping[str, object], now: float) -> FaultSettings:
        """Apply a partial change; a storm or outage given here starts counting from ``now``."""
        self._settings = self._settings.updated(changes)
        if "storm_seconds" in changes:
            self._storm_until = now + self._settings.storm_seconds
        if "token_outage_seconds" in changes:
            self._outage_until = now + self._settings.token_outage_seconds
        return self._settings

    def reset(self, now: float) -> None:
        """Back to no faults at all (not to the start-up faults: a reset means a clean slate)."""
        self._settings = FaultSettings()
        self._random = random.Random(self._seed)  # noqa: S311 - fault dice, not cryptography
        self._storm_until = now
        self._outage_until = now

    def storm_remaining(self, now: float) -> float:
        """Seconds the 429 storm still lasts (0 when there is none)."""
        return max(0.0, self._storm_until - now)

    def outage_remaining(self, now: float) -> float:
        """Seconds the token endpoint is still down (0 when it is up)."""
        return max(0.0, self._outage_until - now)

    @property
    def latency_seconds(self) -> float:
        return self._settings.latency_ms / 1000.0

    @property
    def hang_seconds(self) -> float:
        return self._settings.hang_seconds

    def roll(self) -> Fault:
        """Decide one call's fault: drop, then error, then timeout, each with its own roll.

        A rate of zero skips its roll, so a given fault configuration and seed always produce the same
        sequence of fates for the same sequence of calls.
        """
        settings = self._settings
        if settings.drop_rate and self._random.random() < settings.drop_rate:
            return Fault.DROP
        if settings.error_rate and self._random.random() < settings.error_rate:
            return Fault.ERROR_500 if self._random.random() < 0.5 else Fault.ERROR_503
        if settings.timeout_rate and self._random.random() < settings.timeout_rate:
            return Fault.TIMEOUT
        return Fault.NONE

    def snapshot(self, now: float) -> dict[str, float]:
        """The admin view: the settings, with storm and outage as the seconds they still last."""
        view = dataclasses.asdict(self._settings)
        view["storm_seconds"] = round(self.storm_remaining(now), 3)
        view["token_outage_seconds"] = round(self.outage_remaining(now), 3)
        return view
