"""A loopback TCP proxy the fault suite puts between the workers and the broker, to break the path on demand.

Three faults, each undone by :meth:`TcpProxy.restore`:

- **cut**: every proxied connection is closed and the port stops listening, as when a host goes away
  (both ends see the close at once, and reconnects are refused);
- **hang**: nothing is forwarded any more, in either direction, but every socket stays open and new
  connections are accepted and held, as in a network partition: neither end hears of it until its
  heartbeats go unanswered.  On restore whatever was held flows on, as TCP's retransmissions would
  deliver it when a partition heals (a close either end made meanwhile included).
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to the target; :attr:`port` is chosen by the OS at the first start."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop for good: the port closes and every link with it."""
        self._flowing.set()
        await self._stop_listening()

    async def cut(self) -> None:
        await self._stop_listening()

    def hang(self) -> None:
        self._flowing.clear()

    async def restore(self) -> None:
        """Undo a cut or a hang (either way, forwarding resumes)."""
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)
        await self._flowing.wait()  # a connection made during a hang waits, like a SYN in a partition
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            self._links.discard(writer)
            return
        self._links.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                await self._flowing.wait()  # held, not dropped: a hang delays, TCP would not lose bytes
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            self._links.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
