"""Mixed commands with a known end state, and the record-by-record comparison with the sandbox's state.

A mixed workload uses VINs in four groups: created only (NOT_FIXED at the end), created then fixed
(FIXED), created then deleted (absent), and read (half of them on VINs that exist by the end).  All its
commands are published at once, so a fix or delete may reach DVSA before its create: the fleet retries
those 404s until the create lands.  Fixes and deletes are on different VINs, so the end state does not
depend on the order in which they land.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bench.fleet_throughput import FIXED_ON, REFERENCE, START, vin
from recalls.shared.contracts import (
    Command,
    CreateCommand,
    DeleteCommand,
    FixCommand,
    GetCommand,
    OutcomeEvent,
)

End = Literal["NOT_FIXED", "FIXED", "absent"]
Key = tuple[str, str]  # (VIN, manufacturer campaign reference)
COMMANDS_PER_UNIT = 6  # one create-only, create + fix, create + delete, one get


@dataclass(frozen=True)
class Workload:
    """Commands and the state of each recall they leave in DVSA once every one is applied.

    Every command a run sends that DVSA may apply belongs in the workload: the count of successful
    creates is checked against it.
    """

    commands: tuple[Command, ...]
    expected: Mapping[Key, End]

    @classmethod
    def of(cls, commands: Iterable[Command]) -> Workload:
        """A workload of any commands; a delete wins over a fix, a fix over a create."""
        listed = tuple(commands)
        expected: dict[Key, End] = {}
        rank: dict[End, int] = {"NOT_FIXED": 0, "FIXED": 1, "absent": 2}
        for command in listed:
            end = _end_of(command)
            if end is None:
                continue
            key = (command.vin.upper(), command.manufacturer_campaign_reference or "")
            if key not in expected or rank[end] > rank[expected[key]]:
                expected[key] = end
        return cls(listed, expected)

    @classmethod
    def mixed(cls, tag: str, size: int) -> Workload:
        """About ``size`` commands of the four groups (a multiple of six), VINs unique to ``tag``."""
        units = max(1, size // COMMANDS_PER_UNIT)
        early: list[Command] = []  # the creates that fixes and deletes wait for go first
        rest: list[Command] = []
        for n in range(units):
            fixed, deleted, kept = vin(tag, "F", n), vin(tag, "D", n), vin(tag, "C", n)
            early += [_create(fixed), _create(deleted)]
            rest += [
                _create(kept),
                FixCommand(vin=fixed, manufacturer_campaign_reference=REFERENCE, rectification_date=FIXED_ON),
                DeleteCommand(vin=deleted, manufacturer_campaign_reference=REFERENCE),
                GetCommand(vin=kept if n % 2 == 0 else vin(tag, "N", n)),
            ]
        return cls.of(early + rest)

    @property
    def message_ids(self) -> set[str]:
        return {command.message_id for command in self.commands}

    @property
    def creates(self) -> int:
        """Distinct recalls the workload creates (a create sent twice is one)."""
        creates = [c for c in self.commands if c.verb == "create"]
        return len({(c.vin.upper(), c.manufacturer_campaign_reference) for c in creates})

    def lost(
        self,
        recalls: Sequence[Mapping[str, Any]],
        outcomes: Mapping[str, OutcomeEvent],
        dead: Collection[str],
    ) -> dict[str, str]:
        """message_id -> why, for each command whose effect is missing from ``recalls`` (the sandbox's
        state) or that has neither an outcome event nor a place in the dead-letter queue (``dead``)."""
        state = {(r["vin"], r["manufacturerCampaignReference"]): r["repairStatus"] for r in recalls}
        lost: dict[str, str] = {}
        for command in self.commands:
            missing = self._missing_effect(command, state)
            if missing is not None:
                lost[command.message_id] = missing
            elif command.message_id not in outcomes and command.message_id not in dead:
                lost[command.message_id] = f"{command.verb} {command.vin}: no outcome, not dead-lettered"
        return lost

    def _missing_effect(self, command: Command, state: Mapping[Key, str]) -> str | None:
        if command.verb == "get":
            return None
        key = (command.vin.upper(), command.manufacturer_campaign_reference or "")
        held = state.get(key)
        match command.verb:
            case "create" if self.expected.get(key) != "absent" and held is None:
                return f"create {command.vin}: no such recall in DVSA"
            case "fix" if self.expected.get(key) != "absent" and held != "FIXED":
                return f"fix {command.vin}: the recall is {held or 'absent'}, not FIXED"
            case "delete" if held is not None:
                return f"delete {command.vin}: the recall is still there ({held})"
        return None


def _create(target: str) -> CreateCommand:
    return CreateCommand(
        vin=target, manufacturer_campaign_reference=REFERENCE, recall_campaign_start_date=START
    )


def _end_of(command: Command) -> End | None:
    match command.verb:
        case "create":
            return "NOT_FIXED"
        case "fix":
            return "FIXED"
        case "delete":
            return "absent"
    return None
