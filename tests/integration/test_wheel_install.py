"""The wheel as another team installs it (docs/design.md, decisions 39 and 40).

Built from the files the image copies, installed with nothing but its base dependencies (locks/base.txt,
each file checked by its hash) into a fresh virtual environment, and used from an application folder that
has a ``shared`` and a ``cli`` package of its own: every public name imports, the distribution puts one
package at the top of site-packages, none of the fleet's web, database or server stack is there, the
application's packages stay its own, a role without its extra says which extra to install, and a command
published with the installed publisher reaches the real RabbitMQ.  Besides the broker it needs the package
index (or the machine's mirror of it), as scripts/setup does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from packaging.utils import canonicalize_name

from recalls.shared.contracts import CreateCommand
from recalls.shared.topology import Topology, delete
from recalls.shared.validation import decode_command
from tests.support.base_install import NEVER_IN_BASE
from tests.support.services import AMQP_URL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The role folders, each linked into recalls/.
ROLES = sorted(path.name for path in (ROOT / "recalls").iterdir() if path.is_symlink())
# What the Dockerfile copies to build the project (the lock aside), so that a role the image leaves out
# is missing from this wheel too.
COPIED = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
SOURCES = sorted({source for line in COPIED for source in line.split()} - {"locks/runtime.txt"})
# pyproject.toml's package data, by the package's folder in the wheel (and below this checkout).
DATA = {
    "recalls": ["py.typed"],
    "recalls/shared": ["py.typed", "asyncapi.json", "schemas/*.json"],
    "recalls/producers": ["py.typed"],
    "recalls/ops/dashboard": ["*.html", "*.js", "*.css", "*.svg"],
}
# The application's own packages, named like two of the fleet's roles.
APP_PACKAGES = ("shared", "cli")
RETRY_TIERS = (1.0,)  # one tier: quorum queues are slow to declare
VIN = "WAUZZZF49HA036784"


@dataclass(frozen=True)
class Installed:
    """The built wheel and a fresh virtual environment holding it, beside an application's folder."""

    wheel: Path
    python: Path
    app: Path

    def command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` run in the application's folder, with the environment's bin/ first on PATH.

        Nothing of this checkout is on the path, and the application's folder comes first on it, as it
        does for ``python app.py``.
        """
        return subprocess.run(  # noqa: S603 (the environment's own programs)
            argv,
            cwd=self.app,
            env={"PATH": f"{self.python.parent}:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def run(self, code: str, *args: str) -> str:
        """What ``code`` prints, run by the environment's interpreter in the application's folder."""
        result = self.command(str(self.python), "-c", code, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def run_json(self, code: str, *args: str) -> dict[str, Any]:
        printed: dict[str, Any] = json.loads(self.run(code, *args))
        return printed


def pip(*args: str) -> None:
    # The machine's pip settings (a mirror of the index) stay: every file is checked by its hash.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(  # noqa: S603 (our own interpreter's pip)
        [sys.executable, "-m", "pip", *args], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def base_requirements(wheel: Path) -> str:
    """locks/base.txt and the wheel, each by its hash.

    Not setuptools: the lock holds it to build the project, and installing a wheel builds nothing.
    """
    lock = (ROOT / "locks" / "base.txt").read_text().replace("\\\n", " ")
    pins = [line for line in lock.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    kept = [line for line in pins if not line.startswith("setuptools==")]
    assert len(kept) == len(pins) - 1, "locks/base.txt pins setuptools, the build backend"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return "\n".join([*kept, f"recalls-fleet @ {wheel.as_uri()} --hash=sha256:{digest}", ""])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    # A copy of what the image copies, so the build neither writes into this checkout nor reads a stale
    # build/ folder of it; the links below recalls/ are copied as links, as a clone has them.
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(work / "dist"), str(source))
    (wheel,) = (work / "dist").glob("*.whl")

    environment = work / "venv"
    # No pip inside: this interpreter's pip installs into it, so the environment holds only the install.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)  # noqa: S603
    python = environment / "bin" / "python"
    requirements = work / "requirements.txt"
    requirements.write_text(base_requirements(wheel))
    # One install: the wheel's base dependencies must all be in the lock, or --require-hashes refuses.
    pip("--python", str(python), "install", "--require-hashes", "-r", str(requirements))

    app = work / "app"
    for package in APP_PACKAGES:
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(f"OWNER = 'the application'\nNAME = {package!r}\n")
    yield Installed(wheel=wheel, python=python, app=app)


def test_the_wheel_holds_every_role_through_the_links_and_its_data(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    wanted = {"recalls/__init__.py", "recalls/testing.py"}
    for role in ROLES:
        for folder, dirs, files in os.walk(ROOT / role):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            relative = Path(folder).relative_to(ROOT)
            wanted |= {f"recalls/{relative / file}" for file in files if file.endswith(".py")}
    for package, patterns in DATA.items():
        for pattern in patterns:
            found = {
                f"{package}/{path.relative_to(ROOT / package)}" for path in (ROOT / package).glob(pattern)
            }
            assert found, (package, pattern)
            wanted |= found
    assert sorted(wanted - names) == []
    dist_info = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
    assert {name.split("/")[0] for name in names} == {"recalls", *dist_info}
    assert len(dist_info) == 1


INSTALL_PROBE = """
import importlib.metadata, importlib.util, json
from pathlib import PurePosixPath

dist = importlib.metadata.distribution("recalls-fleet")
top_level = dist.read_text("top_level.txt")
recorded = {PurePosixPath(str(f)).parts[0] for f in dist.files or []}
print(json.dumps({
    "top_level": top_level.split() if top_level is not None else None,
    "recorded": sorted(n for n in recorded if n != ".." and not n.endswith(".dist-info")),
    "installed": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "importable": sorted(n for n in json.loads(__import__("sys").argv[1]) if importlib.util.find_spec(n)),
}))
"""


def test_the_base_install_is_one_top_level_package_and_exactly_the_base_lock(installed: Installed) -> None:
    stack = sorted(NEVER_IN_BASE)
    found = installed.run_json(INSTALL_PROBE, json.dumps(stack))
    assert found["top_level"] in (["recalls"], None)
    assert found["recorded"] == ["recalls"]
    assert found["importable"] == []
    installed_names = {canonicalize_name(name) for name in found["installed"]}
    assert not installed_names & NEVER_IN_BASE
    locked = {
        canonicalize_name(line.split("==")[0])
        for line in base_requirements(installed.wheel).splitlines()
        if "==" in line
    }
    assert installed_names == {*locked, "recalls-fleet"}


NAMES_PROBE = """
import importlib, json, sys
import recalls, recalls.shared.contracts, recalls.testing
from recalls import *

own = {name: importlib.import_module(name) for name in sys.argv[1:]}
print(json.dumps({
    "unbound": [name for name in recalls.__all__ if name not in globals()],
    "double": recalls.testing.InMemoryPublisher.__name__,
    "recalls": recalls.__file__,
    "recalls.shared": recalls.shared.__file__,
    "own": {name: [module.__file__, module.OWNER, module.NAME] for name, module in own.items()},
}))
"""


def test_every_public_name_imports_and_the_applications_packages_stay_its_own(installed: Installed) -> None:
    found = installed.run_json(NAMES_PROBE, *APP_PACKAGES)
    assert found["unbound"] == []
    assert found["double"] == "InMemoryPublisher"
    site = installed.python.parents[1] / "lib"
    for module in ("recalls", "recalls.shared"):
        assert Path(found[module]).is_relative_to(site), found[module]
    assert found["own"] == {
        name: [str(installed.app / name / "__init__.py"), "the application", name] for name in APP_PACKAGES
    }


EXTRAS_PROBE = """
import importlib, json, sys

said = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        said[module] = str(error)
print(json.dumps(said))
"""


def test_a_role_imported_without_its_extra_names_the_extra(installed: Installed) -> None:
    roles = {
        "recalls.sandbox.server": "sandbox",
        "recalls.workers.runtime": "worker",
        "recalls.producers.batch_api": "api",
        "recalls.shared.store.database": "worker",
    }
    said = installed.run_json(EXTRAS_PROBE, *roles)
    assert set(said) == set(roles)
    for module, extra in roles.items():
        assert f"pip install 'recalls-fleet[{extra}]'" in said[module], said[module]


PUBLISH_PROBE = """
import asyncio, datetime, sys
from recalls import CreateCommand, Publisher, PublisherConfig, message_id_for

url, prefix, vin = sys.argv[1:]

async def main():
    config = PublisherConfig(url, prefix=prefix, declare=True, retry_tiers=(1.0,), name="wheel-test")
    command = CreateCommand(
        vin=vin,
        manufacturer_campaign_reference="WHEEL-1",
        recall_campaign_start_date=datetime.date(2024, 1, 2),
        message_id=message_id_for("create", vin, "WHEEL-1", prefix),
    )
    async with Publisher.connect(config) as publisher:
        print(await publisher.publish(command))

asyncio.run(main())
"""


async def test_the_installed_publisher_publishes_a_command_to_rabbitmq(installed: Installed) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    names = Topology(prefix, RETRY_TIERS)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        printed = await asyncio.to_thread(installed.run, PUBLISH_PROBE, AMQP_URL, prefix, VIN)
        message_id = printed.strip()
        async with connection.channel() as channel:
            queue = await channel.get_queue(names.command_queue("create"))
            message = await queue.get(no_ack=True, fail=True)
        assert message is not None
        assert message.message_id == message_id
        command = decode_command(message.body)
        assert isinstance(command, CreateCommand)
        assert (command.vin, command.message_id) == (VIN, message_id)
        assert command.recall_campaign_start_date == dt.date(2024, 1, 2)
    finally:
        async with connection.channel() as channel:
            await delete(channel, names)
        await connection.close()


def test_the_console_script_runs_the_publisher_commands_and_names_the_extra_of_the_others(
    installed: Installed,
) -> None:
    listed = installed.command("recalls", "--help")
    assert listed.returncode == 0, listed.stderr
    assert all(f"  {name} " in listed.stdout for name in ("publish", "worker", "api", "simulator"))
    for name in ("publish", "topology", "schemas"):
        shown = installed.command("recalls", name, "--help")
        assert (shown.returncode, shown.stderr) == (0, ""), name
    for name, extra in (("worker", "worker"), ("api", "api"), ("simulator", "sandbox")):
        refused = installed.command("recalls", name, "--help")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(f"error: `recalls {name}` needs "), refused.stderr
        assert refused.stderr.endswith(f"pip install 'recalls-fleet[{extra}]'\n"), refused.stderr
