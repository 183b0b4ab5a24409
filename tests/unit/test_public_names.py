"""The publisher library's public names: exactly these, each importable, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import producers

ROOT = Path(__file__).resolve().parents[2]
# What the fleet's services use and a publishing system should not have to load.
HEAVY = [
    "aiohttp",
    "asyncpg",
    "click",
    "fastapi",
    "httpx",
    "pydantic",
    "pydantic_settings",
    "redis",
    "sqlalchemy",
    "starlette",
    "uvicorn",
]


def test_the_public_names_are_exactly_these() -> None:
    assert producers.__all__ == [
        "BrokerUnreachable",
        "Command",
        "CreateCommand",
        "DeleteCommand",
        "FixCommand",
        "GetCommand",
        "InvalidCommand",
        "Lane",
        "OutcomeEvent",
        "PublishFailed",
        "PublishResult",
        "Publisher",
        "PublisherConfig",
        "PublisherConfigError",
        "QueueFull",
        "SyncPublisher",
        "TopologyError",
        "Unroutable",
        "events",
        "message_id_for",
    ]


def test_each_public_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from producers import *", namespace)  # noqa: S102 (a fixed statement)
    del namespace["__builtins__"]
    assert sorted(namespace) == sorted(producers.__all__)
    assert all(namespace[name] is getattr(producers, name) for name in producers.__all__)


def test_the_package_is_typed() -> None:
    assert (ROOT / "producers" / "py.typed").is_file()


def test_importing_the_library_loads_nothing_heavy() -> None:
    probe = (
        "import json, sys, producers; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})))"
    )
    result = subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == []
