"""The lock files pin every dependency with hashes, and the image and scripts/setup install only from them.

locks/runtime.txt (the image: every role), locks/base.txt (the base install: the wheel test) and
locks/dev.txt (scripts/setup, so CI) are made by ``bash scripts/lock`` from pyproject.toml; these tests
read the files, they do not resolve anything (no network).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.base_install import NEVER_IN_BASE

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {name: ROOT / "locks" / f"{name}.txt" for name in ("runtime", "base", "dev")}
# The extras each lock holds besides the base dependencies: every role for the image, and the tools too.
ROLES = ["worker", "api", "sandbox"]
EXTRAS = {"runtime": ROLES, "base": [], "dev": [*ROLES, "dev"]}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(lock: str) -> list[Requirement]:
    """What ``lock`` must pin of pyproject.toml: the dependencies, those of its extras, the build backend."""
    project = pyproject()
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in EXTRAS[lock]:
        wanted += project["project"]["optional-dependencies"][extra]
    return [Requirement(text) for text in wanted]


def entries(lock: str) -> list[list[str]]:
    """Each requirement of a lock file as its words: the pin, then its options (continued lines joined).

    An environment marker (``; sys_platform != "win32"``) between the pin and the options is left out.
    """
    text = LOCKS[lock].read_text().replace("\\\n", " ")
    found: list[list[str]] = []
    for line in text.splitlines():
        pin, _, rest = line.split("#", 1)[0].partition(";")
        options = rest[rest.find("--") :].split() if "--" in rest else []
        words = pin.split() + options
        if words:
            found.append(words)
    return found


def pins(lock: str) -> dict[str, tuple[str, list[str]]]:
    """Package (canonical name) -> (version, hashes) of a lock file."""
    found: dict[str, tuple[str, list[str]]] = {}
    for first, *options in entries(lock):
        match = PIN.match(first)
        assert match, f"{lock}: {first} is not pinned with =="
        found[canonicalize_name(match[1])] = (match[2], options)
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_is_pinned_with_its_hashes_and_nothing_else(lock: str) -> None:
    for name, (version, options) in pins(lock).items():
        assert options, f"{lock}: {name}=={version} has no hash"
        assert all(HASH.match(option) for option in options), (lock, name, options)


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_pins_every_dependency_pyproject_declares(lock: str) -> None:
    locked = pins(lock)
    for requirement in declared(lock):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock}: {requirement} is not locked (bash scripts/lock)"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (lock, str(requirement), version)


def test_all_is_the_roles_the_image_and_the_tests_lock() -> None:
    assert pyproject()["project"]["optional-dependencies"]["all"] == [f"recalls-fleet[{','.join(ROLES)}]"]


@pytest.mark.parametrize("lock", ["base", "dev"])
def test_the_base_install_and_the_tests_run_the_versions_the_image_runs(lock: str) -> None:
    locked = {name: version for name, (version, _) in pins(lock).items()}
    runtime = {name: version for name, (version, _) in pins("runtime").items()}
    # The tests' lock holds every package of the image's, the base lock some of them.
    compared = runtime if lock == "dev" else locked
    assert {name: locked.get(name) for name in compared} == {name: runtime.get(name) for name in compared}


def test_the_base_lock_holds_no_web_database_or_server_package() -> None:
    assert not NEVER_IN_BASE & set(pins("base"))


def install_lines(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    return [
        line.strip()
        for line in text.splitlines()
        if "pip install" in line and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize(
    ("path", "lock"),
    [(ROOT / "Dockerfile", "locks/runtime.txt"), (ROOT / "scripts" / "setup", "locks/dev.txt")],
)
def test_installs_take_the_lock_with_hashes_then_the_project_alone(path: Path, lock: str) -> None:
    dependencies, project = install_lines(path)
    assert "--require-hashes" in dependencies.split()
    assert f"-r {lock}" in dependencies
    # The project brings no dependency of its own and builds with the setuptools of the lock.
    assert {"--no-deps", "--no-build-isolation"} <= set(project.split())


def test_the_build_context_holds_only_what_the_image_copies() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*"  # everything else (.env, deploy/recalls.env, .venv) stays out
    included = {pattern.removeprefix("!").rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    assert sources == included


def test_the_audit_checks_both_locks_by_their_hashes_outside_the_test_command() -> None:
    audit = (ROOT / "scripts" / "audit").read_text()
    assert re.search(r"^PIP_AUDIT_VERSION=\d+\.\d+\.\d+$", audit, flags=re.MULTILINE)  # a pinned tool
    assert "--require-hashes" in audit
    assert "--strict" in audit  # a package the service cannot look up fails the audit
    assert "locks=(locks/runtime.txt locks/dev.txt)" in audit
    # It needs the advisory service, which a test run may not reach.
    for runner in (ROOT / "scripts" / "test", ROOT / "scripts" / "setup", ROOT / ".ci" / "run"):
        assert "scripts/audit" not in runner.read_text(), runner
