"""Run the DVSA sandbox as a child process, as DVSA would be: its own loop, its own clock stamps.

Used by ``recalls demo`` and by the end-to-end tests and benchmarks, so there is one way to do it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping

from pydantic import AnyUrl

from recalls.cli.main import recalls_command
from recalls.shared.settings import SANDBOX_TOKEN_PATH, Settings


def credential_env(settings: Settings) -> dict[str, str]:
    """The RECALLS_DVSA_* variables that give a child process ``settings``' DVSA.

    A child sandbox accepts these credentials; a child worker presents them, at the URLs when they are
    set (without URLs a worker refuses credentials other than the sandbox's defaults).
    """
    urls = {
        "RECALLS_DVSA_BASE_URL": str(settings.dvsa_base_url),
        "RECALLS_DVSA_TOKEN_URL": str(settings.dvsa_token_url),
    }
    return {
        "RECALLS_DVSA_CLIENT_ID": settings.dvsa_client_id,
        "RECALLS_DVSA_CLIENT_SECRET": settings.dvsa_client_secret.get_secret_value(),
        "RECALLS_DVSA_SCOPE": settings.dvsa_scope,
        "RECALLS_DVSA_API_KEY": settings.dvsa_api_key.get_secret_value(),
        "RECALLS_RATE_LIMIT": str(settings.rate_limit),
        **(urls if settings.dvsa_base_url is not None and settings.dvsa_token_url is not None else {}),
    }


def _ahead_of_the_fleet(pid: int) -> None:
    """Run the sandbox ahead of the fleet in the CPU queue, as DVSA runs on machines of its own.

    The sandbox stamps each request's arrival; if it waited for a CPU behind the workers it judges,
    requests that arrived apart would be stamped together.  Needs root; otherwise it is skipped.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, -10)


def start(
    settings: Settings, *flags: str, env: Mapping[str, str] | None = None
) -> tuple[str, subprocess.Popen[str]]:
    """Start ``recalls simulator`` on a free loopback port; return its URL once it listens."""
    environment = {**os.environ, **credential_env(settings), **(env or {})}
    argv = recalls_command("simulator", "--host", "127.0.0.1", "--port", "0", *flags)
    process = subprocess.Popen(argv, env=environment, stdout=subprocess.PIPE, text=True)  # noqa: S603
    _ahead_of_the_fleet(process.pid)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        process.wait()
        raise RuntimeError(f"the DVSA sandbox did not start (it said {line.strip()!r})")
    return line.rsplit(" ", 1)[-1].strip(), process


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextlib.asynccontextmanager
async def sandbox_process(settings: Settings, *flags: str) -> AsyncIterator[str]:
    """A sandbox child process for the duration of the block; yields its URL."""
    url, process = await asyncio.to_thread(start, settings, *flags)
    try:
        yield url
    finally:
        await asyncio.to_thread(stop, process)


def pointed_at(settings: Settings, url: str) -> Settings:
    """``settings`` pointed explicitly at a running sandbox: its location, and DVSA's URLs set to it.

    Explicit URLs let the fleet present credentials of its own (the implicit sandbox takes only its
    defaults).
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return settings.model_copy(
        update={
            "sandbox_host": host,
            "sandbox_port": int(port),
            "dvsa_base_url": AnyUrl(url),
            "dvsa_token_url": AnyUrl(f"{url}{SANDBOX_TOKEN_PATH}"),
        }
    )
