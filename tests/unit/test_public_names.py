"""The public names of ``recalls`` (the publisher library): exactly these, importable, and light."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import recalls
from tests.support.fresh_python import fresh_python

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


def loaded_by(statement: str, roots: set[str]) -> list[str]:
    """The modules under ``roots`` that a fresh interpreter holds after running ``statement``."""
    listed = f"sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})"
    probe = f"import json, sys; {statement}; print(json.dumps({listed}))"
    loaded: list[str] = json.loads(fresh_python(probe))
    return loaded


def test_importing_the_library_loads_nothing_heavy() -> None:
    assert loaded_by("import recalls, recalls.testing; from recalls import *", set(HEAVY)) == []


def test_importing_a_module_below_the_root_loads_no_public_name() -> None:
    loaded = loaded_by("import recalls.shared.contracts", {"aio_pika", "recalls"})
    assert loaded == ["recalls", "recalls.shared", "recalls.shared.contracts"]


def test_the_lazy_names_come_from_the_modules_the_type_checker_reads() -> None:
    tree = ast.parse((ROOT / "recalls" / "__init__.py").read_text())
    (block,) = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    typed = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == recalls._HOMES
    assert sorted(typed) == sorted(recalls.__all__)


def test_the_root_lists_its_lazy_names_and_refuses_others() -> None:
    assert set(recalls.__all__) <= set(dir(recalls))
    with pytest.raises(AttributeError, match="no attribute 'Publish'"):
        recalls.Publish  # type: ignore[attr-defined]  # noqa: B018 (the lookup is the test)
