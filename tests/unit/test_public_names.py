"""The public names of ``recalls`` (the publisher library): exactly these, importable, and light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import recalls

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
    assert recalls.__all__ == [
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
    exec("from recalls import *", namespace)  # noqa: S102 (a fixed statement)
    del namespace["__builtins__"]
    assert sorted(namespace) == sorted(recalls.__all__)
    assert all(namespace[name] is getattr(recalls, name) for name in recalls.__all__)


def test_the_package_is_typed() -> None:
    assert (ROOT / "recalls" / "py.typed").is_file()


def test_importing_the_library_loads_nothing_heavy() -> None:
    probe = (
        "import json, sys, recalls, recalls.testing; "
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
