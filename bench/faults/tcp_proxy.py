"""A loopback TCP proxy the fault suite puts between the workers and the broker, to break the path on demand.

Three faults, each undone by :meth:`TcpProxy.restore`:

- **cut**: every proxied connection is closed and the port stops listening, as when a host goes away
  (both ends see the close at once, and reconnects are refused);
- **hang**: nothing is forwarded any more, in either direction, but every socket stays open and new
  connections are accepted and held, as in a network partition: neither end hears of it until its
  heartbeats go unanswered.  On restore whatever was held flows on, as TCP's retransmissions would
  deliver it when a partition heals (a close either end made meanwhile included).

With ``tls`` it speaks TLS to its clients and plain TCP to the target, as the tests' TLS proxies in front
of the machine's services do (tests/support/tls.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable

Preamble = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
"""What a client and the proxy say in the clear before TLS starts; False turns the client away."""


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to the target; :attr:`port` is chosen by the OS at the first start.

    ``tls``: the proxy's side of TLS with its clients, from the first byte, or after ``preamble`` when one
    is given (PostgreSQL's SSLRequest).  :attr:`sessions` counts the clients it has passed on to the target.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        tls: ssl.SSLContext | None = None,
        preamble: Preamble | None = None,
    ) -> None:
        if preamble is not None and tls is None:
            raise ValueError("a preamble is what comes before TLS: it needs tls")
        self._target = (target_host, target_port)
        self._tls = tls
        self._preamble = preamble
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0
        self.sessions = 0

    async def start(self) -> None:
        tls = self._tls if self._preamble is None else None  # after a preamble, TLS starts in _accept
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=tls)
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
        for handshake in list(self._handshakes):
            handshake.cancel()  # before the aborts below: see _start_tls
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)
        await self._flowing.wait()  # a connection made during a hang waits, like a SYN in a partition
        try:
            if self._preamble is not None and self._tls is not None:  # __init__ refuses one without the other
                if not await self._preamble(reader, writer):
                    raise ConnectionAbortedError("turned away in the preamble")
                await self._start_tls(writer, self._tls)
            self.sessions += 1
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except (OSError, asyncio.IncompleteReadError):  # ssl.SSLError is an OSError
            writer.transport.abort()
            self._links.discard(writer)
            return
        self._links.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _start_tls(self, writer: asyncio.StreamWriter, tls: ssl.SSLContext) -> None:
        """TLS on a link after its preamble.  Stopping cancels the handshake rather than aborting under it:
        on Python 3.11 an abort mid-handshake leaves the writer without a transport."""
        handshake = asyncio.ensure_future(writer.start_tls(tls))
        self._handshakes.add(handshake)
        try:
            await asyncio.wait([handshake])
        finally:
            self._handshakes.discard(handshake)
            handshake.cancel()  # in case this link's own task was cancelled meanwhile
        if handshake.cancelled():
            raise ConnectionAbortedError("the proxy stopped during the TLS handshake")
        handshake.result()  # the handshake's own error, if it failed

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
