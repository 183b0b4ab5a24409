"""The ``recalls`` command's surface: its listing, its start-up, and what it says when an extra is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recalls.cli.main import COMMANDS, load

HEAVY = ("fastapi", "sqlalchemy", "uvicorn", "aio_pika", "aiormq", "pydantic", "httpx", "rich", "redis")


def recalls(*args: str, before: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{before}from recalls.cli.main import main; main()"
    return subprocess.run(  # noqa: S603  (this interpreter, fixed arguments)
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "name", [name for section in COMMANDS.values() for name in section], ids=lambda name: name
)
def test_each_command_is_listed_with_the_first_line_of_its_own_help(name: str) -> None:
    entry = next(section[name] for section in COMMANDS.values() if name in section)
    help_text = load(name, entry).help or ""
    assert entry.summary == help_text.strip().splitlines()[0]


def test_help_lists_every_command_and_loads_no_web_database_or_broker_stack() -> None:
    listing = (
        "import sys; from recalls.cli.main import cli; "
        "cli(['--help'], standalone_mode=False); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", listing], capture_output=True, text=True, timeout=60, check=True
    )
    *shown, loaded = done.stdout.splitlines()
    assert loaded == "[]"
    for section in COMMANDS.values():
        for name in section:
            assert any(line.strip().startswith(f"{name} ") for line in shown), name


def test_a_command_whose_extra_is_not_installed_names_the_extra_and_exits_2() -> None:
    done = recalls("api", "--help", before="import sys; sys.modules['uvicorn'] = None; ")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: `recalls api` needs uvicorn, which this install lacks: pip install 'recalls-fleet[api]'\n"
    )


def test_an_unknown_command_is_a_usage_error() -> None:
    done = recalls("publsh")
    assert done.returncode == 2
    assert "No such command 'publsh'" in done.stderr
