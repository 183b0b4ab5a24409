"""A PostgreSQL server of the fault suite's own, on loopback, to restart under load.

The machine's PostgreSQL is shared with other work, so the ``store_restart`` scenario crashes and
restarts a server of its own instead: ``initdb`` into a scratch directory (as the ``postgres`` user,
since PostgreSQL refuses to run as root), trust authentication on loopback, a free port, and
``pg_ctl`` to stop it the way a crash does (``-m immediate``: no checkpoint, recovery from the WAL at
the next start) and to start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.faults.scenarios.outages import run_tool
from bench.ports import free_port

DATABASE = "recalls"
OWNER = "postgres"  # PostgreSQL's own user: initdb and the server refuse root


def _binaries() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return versions[-1].parent


@dataclass
class PrivateServer:
    data: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    async def as_owner(self, *argv: str) -> str:
        if getpass.getuser() == OWNER:
            return await run_tool(*argv)
        return await run_tool("runuser", "-u", OWNER, "--", *argv)

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        await self.as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data / "pgdata"), "-o", options,
                             "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")  # fmt: skip

    async def crash(self) -> None:
        """Stop as a crash would: at once, no checkpoint (the next start recovers from the WAL)."""
        await self.as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data / "pgdata"), "-m", "immediate",
                             "-w", "stop")  # fmt: skip

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            await self.as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data / "pgdata"), "-m", "fast",
                                 "-w", "stop")  # fmt: skip


@contextlib.asynccontextmanager
async def private_server() -> AsyncIterator[PrivateServer]:
    """A fresh server holding an empty database ``recalls``; stopped and removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="faults-pg-"))
    try:
        if getpass.getuser() != OWNER:
            await asyncio.to_thread(shutil.chown, scratch, OWNER, OWNER)
        server = PrivateServer(scratch, free_port(), _binaries())
        await server.as_owner(str(server.bin / "initdb"), "-D", str(scratch / "pgdata"), "-U", "postgres",
                               "-A", "trust", "--no-sync")  # fmt: skip
        await server.start()
        try:
            await server.as_owner(str(server.bin / "createdb"), "-h", "127.0.0.1", "-p", str(server.port),
                                   "-U", "postgres", DATABASE)  # fmt: skip
            yield server
        finally:
            await server.stop()
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
