"""The base install is the publisher; each role's packages come with its extra (docs/design.md, decision 40).

These tests read the imports of the code (no install): each entry point of a role, with every module of
ours it imports, must import only packages that the base install and the role's extra bring, those
packages' own dependencies included.  ``tests/integration/test_wheel_install.py`` checks the base install
for real, in a fresh virtual environment.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

import recalls
from recalls.cli.main import COMMANDS
from tests.support.base_install import NEVER_IN_BASE
from tests.support.fresh_python import fresh_python

_T = TypeVar("_T")
ROOT = Path(__file__).resolve().parents[2]
PROJECT = "recalls-fleet"
# Where each role starts: its commands' modules (recalls.cli.main imports each as it runs) and the
# modules a user imports.
ENTRIES = {
    "base": [
        *recalls._HOMES.values(),
        "recalls.testing",
        "recalls.__main__",
        "recalls.cli.main",
        "recalls.cli.publish",
        "recalls.cli.topology",
        "recalls.cli.schemas",
    ],
    "worker": [
        "recalls.cli.worker",
        "recalls.cli.status",
        "recalls.cli.dlq",
        "recalls.cli.bulk",
        "recalls.cli.reconcile",
    ],
    "api": ["recalls.cli.api", "recalls.producers.batch_api", "recalls.ops.dashboard"],
    "sandbox": ["recalls.cli.simulator", "recalls.sandbox.server"],
    "all": ["recalls.cli.demo"],
}
# Declared but never imported as the scan sees it: SQLAlchemy's drivers, loaded by the store's URL;
# sniffio, which httpcore imports on each request without declaring it; uvloop, tried and done without
# (shared/event_loop.py).
NOT_IMPORTED = {"aiosqlite", "asyncpg", "sniffio", "uvloop"}


def declared() -> tuple[list[str], dict[str, list[str]]]:
    """The base dependencies and the extras, as pyproject.toml declares them."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table["dependencies"], table["optional-dependencies"]


def each_once(start: Iterable[_T], more: Callable[[_T], Iterable[_T]]) -> Iterator[_T]:
    """``start`` and all that ``more`` leads to from it, each once."""
    pending = list(start)
    seen: set[_T] = set()
    while pending:
        item = pending.pop()
        if item not in seen:
            seen.add(item)
            yield item
            pending.extend(more(item))


def requirements(extra: str) -> list[Requirement]:
    """What ``pip install recalls-fleet[extra]`` asks for, self-references expanded ("base": none)."""
    base, extras = declared()

    def asked(name: str) -> list[Requirement]:
        return [Requirement(text) for text in extras[name]]

    def referenced(name: str) -> list[str]:
        return [e for r in asked(name) if canonicalize_name(r.name) == PROJECT for e in r.extras]

    named = each_once([extra] if extra != "base" else [], referenced)
    wanted = [r for name in named for r in asked(name) if canonicalize_name(r.name) != PROJECT]
    return [*(Requirement(text) for text in base), *wanted]


def installed_closure(wanted: Iterable[Requirement]) -> set[NormalizedName]:
    """The distributions ``wanted`` installs here: them and their dependencies, markers evaluated."""

    def chosen(requirements: Iterable[Requirement], extra: str) -> list[tuple[NormalizedName, str]]:
        """(name, extra) of each requirement that applies when ``extra`` is asked for."""
        return [
            (canonicalize_name(r.name), asked)
            for r in requirements
            if r.marker is None or r.marker.evaluate({"extra": extra})
            for asked in ["", *r.extras]
        ]

    def needs(item: tuple[NormalizedName, str]) -> list[tuple[NormalizedName, str]]:
        name, extra = item
        return chosen((Requirement(text) for text in importlib.metadata.requires(name) or []), extra)

    return {name for name, _ in each_once(chosen(wanted, ""), needs)}


def module_file(module: str) -> Path | None:
    """The source file of one of our modules (through the links below recalls/), else None."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(tree: ast.AST) -> Iterator[str]:
    """The modules a file may import when run: not under ``if TYPE_CHECKING``, nor ``try``-ed as optional."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            yield from (name for child in node.orelse for name in imports(child))
            continue
        if isinstance(node, ast.Try) and any(
            handler.type is not None and ast.unparse(handler.type) in {"ImportError", "ModuleNotFoundError"}
            for handler in node.handlers
        ):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        else:
            yield from imports(node)


def third_party(entries: Iterable[str]) -> set[str]:
    """The top-level names of the packages not ours that ``entries`` and all they import may import."""

    def imported(module: str) -> list[str]:
        if module.split(".", maxsplit=1)[0] != "recalls":
            return []
        parts = module.split(".")
        # Importing a module runs its packages' __init__ first.
        parents = [".".join(parts[:end]) for end in range(1, len(parts))]
        path = module_file(module)
        return parents + (list(imports(ast.parse(path.read_bytes(), filename=str(path)))) if path else [])

    tops = {module.split(".")[0] for module in each_once(entries, imported)}
    return tops - {"recalls"} - sys.stdlib_module_names


@functools.cache
def _importable() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()  # reads every installed distribution's files


def distributions(names: Iterable[str]) -> set[NormalizedName]:
    """The installed distributions that provide the top-level modules ``names``."""
    return {canonicalize_name(dist) for name in names for dist in _importable()[name]} - {PROJECT}


def test_the_base_install_brings_nothing_of_the_web_database_or_server_stack() -> None:
    assert not installed_closure(requirements("base")) & NEVER_IN_BASE


def test_all_is_every_role_together() -> None:
    roles = {"worker", "api", "sandbox"}
    assert set(declared()[1]) == {*roles, "all", "dev"}
    assert {str(r) for r in requirements("all")} == {str(r) for role in roles for r in requirements(role)}


def test_a_package_in_two_extras_is_asked_for_alike() -> None:
    asked: dict[str, set[str]] = {}
    for role in ("worker", "api", "sandbox", "dev"):
        for requirement in requirements(role):
            asked.setdefault(canonicalize_name(requirement.name), set()).add(str(requirement))
    assert {name: texts for name, texts in asked.items() if len(texts) > 1} == {}


def test_every_entry_is_a_module_of_ours() -> None:
    entries = [module for modules in ENTRIES.values() for module in modules]
    assert [module for module in entries if module_file(module) is None] == []


@pytest.mark.parametrize("role", ENTRIES)
def test_each_role_imports_only_what_its_install_brings(role: str) -> None:
    needed = distributions(third_party(ENTRIES[role]))
    assert needed <= installed_closure(requirements(role)), sorted(needed)


@pytest.mark.parametrize(
    ("command", "target", "extra"),
    [(name, entry.target, entry.extra) for section in COMMANDS.values() for name, entry in section.items()],
)
def test_the_extra_a_command_names_when_it_cannot_load_brings_what_it_imports(
    command: str, target: str, extra: str
) -> None:
    needed = distributions(third_party([target.partition(":")[0]]))
    assert needed <= installed_closure(requirements(extra)), (command, extra, sorted(needed))


@pytest.mark.parametrize("role", ["base", "worker", "api", "sandbox"])
def test_each_role_asks_for_nothing_it_does_not_use(role: str) -> None:
    used = distributions(third_party(ENTRIES[role]))
    unused = {canonicalize_name(r.name) for r in requirements(role)} - used - NOT_IMPORTED
    if role != "base":
        unused -= {canonicalize_name(r.name) for r in requirements("base")}
    assert not unused, sorted(unused)


def test_the_scan_skips_what_only_the_type_checker_or_an_optional_import_reads() -> None:
    source = (
        "import click\n"
        "if TYPE_CHECKING:\n    import httpx\n"
        "try:\n    import uvloop\nexcept ImportError:\n    pass\n"
        "def f():\n    from sqlalchemy import text\n"
    )
    assert set(imports(ast.parse(source))) == {"click", "sqlalchemy", "sqlalchemy.text"}


# Each package that checks for its extra as it is imported, with the extras it names.
GUARDED = {
    "recalls.sandbox": ("sandbox",),
    "recalls.workers": ("worker",),
    "recalls.producers.batch_api": ("api",),
    "recalls.shared.store": ("worker", "api"),
}


def checked_modules(package: str) -> list[str]:
    """The modules ``package``'s __init__ looks for: ``require(role, extras, *modules)``, or ``find_spec``."""
    path = module_file(package)
    assert path is not None
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "require":
                modules += [ast.literal_eval(argument) for argument in node.args[2:]]
            elif node.func.id == "find_spec":
                modules += [ast.literal_eval(argument) for argument in node.args]
    assert modules, f"{package} checks for no package"
    return modules


@pytest.mark.parametrize("package", GUARDED)
def test_a_guarded_package_checks_for_what_its_extras_bring(package: str) -> None:
    checked = distributions(checked_modules(package))
    extras = GUARDED[package]
    for extra in extras:
        own = {canonicalize_name(r.name) for r in requirements(extra)} - NOT_IMPORTED
        own -= {canonicalize_name(r.name) for r in requirements("base")}
        # A role checks for all its extra imports; the store, shared by two roles, for its own part.
        assert checked == own if len(extras) == 1 else checked <= own, (extra, sorted(checked), sorted(own))


@pytest.mark.parametrize("package", GUARDED)
def test_importing_a_guarded_package_without_its_packages_names_the_extra(package: str) -> None:
    modules = checked_modules(package)
    # A None in sys.modules is how Python marks a module as not importable.
    probe = (
        f"import sys; sys.modules[{modules[-1]!r}] = None\n"
        f"try:\n    import {package}\nexcept ModuleNotFoundError as error:\n"
        f"    print(error.name, error)\n"
    )
    printed = fresh_python(probe)
    assert printed.startswith(f"{modules[-1]} "), printed  # the error's name, as Python's own would give
    for extra in GUARDED[package]:
        assert f"pip install 'recalls-fleet[{extra}]'" in printed
    assert f"needs {modules[-1]}," in printed
