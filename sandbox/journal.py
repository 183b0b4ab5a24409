"""The request journal: what reached the sandbox and how it was answered, for tests to inspect.

Bounded: only the newest ``size`` requests are kept, so a long benchmark cannot exhaust memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class JournalEntry:
    verb: str  # create, fix, delete, get or token
    method: str
    path: str
    query: str
    status: int | None  # None: the connection was dropped without an answer
    fault: str | None  # the injected fault that shaped the answer, if any
    arrival: float  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "verb": self.verb,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "fault": self.fault,
            "arrival": self.arrival,
        }


class Journal:
    """The newest requests, oldest first."""

    __slots__ = ("_entries",)

    def __init__(self, size: int) -> None:
        self._entries: deque[JournalEntry] = deque(maxlen=size)

    def record(self, entry: JournalEntry) -> None:
        self._entries.append(entry)

    def newest(self, limit: int | None = None) -> list[JournalEntry]:
        """The last ``limit`` entries (all if ``None``), oldest first."""
        if limit is None or limit >= len(self._entries):
            return list(self._entries)
        start = len(self._entries) - limit
        return [self._entries[index] for index in range(start, len(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
