"""Running the sandbox: in-process (:func:`running_sandbox`) or until a signal (:func:`serve_forever`)."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from recalls.sandbox.app import SANDBOX, build_app
from recalls.sandbox.config import SandboxConfig
from recalls.sandbox.sandbox import Sandbox

# On stop, in-flight requests (a hung "timeout" fault, say) get this long before they are cancelled.
_SHUTDOWN_GRACE_SECONDS = 1.0
_BACKLOG = 1024  # benchmarks open hundreds of connections at once


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    """A sandbox that is listening; ``port`` is the real one even if port 0 was asked for."""

    host: str
    port: int
    app: web.Application

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def sandbox(self) -> Sandbox:
        """The live state, for in-process tests that want to look without going through HTTP."""
        return self.app[SANDBOX]


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bound here rather than by aiohttp so that port 0 resolves to a known port before anyone connects.
    return socket.create_server((host, port), family=family, backlog=_BACKLOG)


@asynccontextmanager
async def running_sandbox(config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    """Listen on ``config.host:config.port`` until the block ends, then stop and close every connection."""
    app = build_app(config)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS
    )
    await runner.setup()
    try:
        sock = _listening_socket(config.host, config.port)
        site = web.SockSite(runner, sock, backlog=_BACKLOG)
        await site.start()
        yield RunningSandbox(host=config.host, port=sock.getsockname()[1], app=app)
    finally:
        await runner.cleanup()


async def serve_forever(
    config: SandboxConfig, on_ready: Callable[[RunningSandbox], None] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly.  ``on_ready`` runs once the port is open."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_sandbox(config) as running:
            if on_ready is not None:
                on_ready(running)
            # Arrival stamps are the sandbox's whole point: keep full collections of the start-up
            # objects from pausing the loop for tens of milliseconds and skewing them.
            gc.collect()
            gc.freeze()
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
