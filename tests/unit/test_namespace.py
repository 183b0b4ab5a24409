"""The project installs one import root, ``recalls``, and nothing of ours imports a role by its old name.

The role folders (shared/, producers/, workers/, ops/, sandbox/, cli/) stay at the top of the repository
and are linked into recalls/.  From the repository's root they are still importable under their own
names, which would load a second copy of every module (two ``Settings`` classes, two sets of metrics); so
the code must always say ``recalls.shared``, never ``shared``.
"""

from __future__ import annotations

import ast
import itertools
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from setuptools import find_namespace_packages, find_packages  # type: ignore[import-untyped]  # the build backend

ROOT = Path(__file__).resolve().parents[2]
# The packages below recalls/, each a link to the top-level folder of the same name.
ROLES = ("shared", "producers", "workers", "ops", "cli", "sandbox")
# The folders' own names, and the sandbox's name before recalls/: none of them is an import root.
OLD_ROOTS = frozenset({*ROLES, "simulator"})
SCANNED = ("recalls", "tests", "bench")


def python_files() -> Iterator[Path]:
    for top in SCANNED:
        # followlinks: recalls/shared and its siblings are links to the role folders.
        for folder, dirs, names in os.walk(ROOT / top, followlinks=True):
            dirs[:] = [d for d in dirs if d not in {"__pycache__", "node_modules"}]
            yield from (Path(folder) / name for name in names if name.endswith(".py"))


def old_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of each import whose first name is an old root, or a string run as one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # Code handed to ``python -c``: "from <module> import main; main()".
            words = node.value.split()
            modules = [words[1]] if len(words) > 1 and words[0] in {"from", "import"} else []
        elif isinstance(node, ast.List | ast.Tuple | ast.Call):
            # ``python -m <module>``: a "-m" followed by the module's name.
            items = node.args if isinstance(node, ast.Call) else node.elts
            values = [item.value if isinstance(item, ast.Constant) else None for item in items]
            modules = [str(after) for before, after in itertools.pairwise(values) if before == "-m"]
        else:
            continue
        for module in modules:
            if module.split(".")[0] in OLD_ROOTS:
                yield node.lineno, module


def test_the_scan_finds_every_role_through_the_links() -> None:
    scanned = {path.relative_to(ROOT).parts[:2] for path in python_files()}
    assert {("recalls", role) for role in ROLES} <= scanned


@pytest.mark.parametrize(
    ("template", "old"),
    [
        ("import {}.settings", "shared"),
        ("from {} import budget", "workers"),
        ("from {}.rules import Rule", "simulator"),
        ("import {}", "sandbox"),
        ('ENTRY = "from {}.main import main; main()"', "cli"),
        ('argv = [sys.executable, "-m", "{}.publish_process"]', "producers"),
        ('subprocess.run(sys.executable, "-m", "{}")', "workers"),
    ],
)
def test_the_scan_catches_an_old_name(template: str, old: str) -> None:
    # Filled in here, so that this file's own source names no old root.
    assert [module.split(".")[0] for _, module in old_imports(ast.parse(template.format(old)))] == [old]
    assert not list(old_imports(ast.parse(template.format(f"recalls.{old}"))))


def test_no_module_imports_a_role_by_its_old_top_level_name() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files()
        for line, module in old_imports(ast.parse(path.read_bytes(), filename=str(path)))
    ]
    assert not found, "import the recalls.* name instead:\n" + "\n".join(found)


def test_each_package_of_the_root_is_a_link_to_its_role_folder() -> None:
    for role in ROLES:
        link = ROOT / "recalls" / role
        assert link.is_symlink(), link
        # Relative, so the link holds in any clone, in the image and in an sdist.
        assert os.readlink(link) == f"../{role}"
        assert (link / "__init__.py").is_file()


def test_the_package_finder_installs_only_the_recalls_root() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    options = dict(setuptools["packages"]["find"])
    # As setuptools reads the table: namespace packages unless told otherwise, from the root by default.
    finder = find_namespace_packages if options.pop("namespaces", True) else find_packages
    (where,) = options.pop("where", ["."])
    found: set[str] = set(finder(where=str(ROOT / where), **options))
    assert {name.split(".")[0] for name in found} == {"recalls"}, sorted(found)
    assert {"recalls", *(f"recalls.{role}" for role in ROLES)} <= found
    assert set(setuptools["package-data"]) <= found


def test_the_console_script_runs_the_recalls_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"recalls": "recalls.cli.main:main"}
