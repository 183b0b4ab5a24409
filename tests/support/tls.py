"""A proxy on loopback that speaks TLS to its clients and plain TCP to a service behind it (RabbitMQ,
Redis, PostgreSQL), so the fleet's TLS settings meet a real handshake without reconfiguring the
machine's services.  Its certificate comes from :mod:`tests.support.certificates`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tests.support.certificates import Certificate

_PG_SSL_REQUEST = 80877103  # PostgreSQL's SSLRequest code; the server answers one byte, then TLS starts
_PG_GSS_REQUEST = 80877104


def server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certfile, certificate.keyfile)
    return context


@dataclass
class TlsProxy:
    """Where the proxy listens, and how many TLS sessions it has carried."""

    port: int
    sessions: int = 0


@contextlib.asynccontextmanager
async def tls_proxy(
    certificate: Certificate, upstream_port: int, *, postgres: bool = False
) -> AsyncIterator[TlsProxy]:
    """TLS on a free loopback port in front of ``upstream_port``; ``postgres``: TLS after SSLRequest."""
    context = server_context(certificate)
    proxy = TlsProxy(0)
    pipes: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if postgres and not await _postgres_tls(reader, writer, context):
                return
            proxy.sessions += 1
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            writer.close()

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(serve(reader, writer))
        pipes.add(task)
        task.add_done_callback(pipes.discard)

    tls = None if postgres else context  # PostgreSQL starts in the clear and upgrades
    server = await asyncio.start_server(start, "127.0.0.1", 0, ssl=tls)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()


async def _postgres_tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext
) -> bool:
    """Answer PostgreSQL's SSLRequest with yes and turn the connection into TLS; False: no TLS asked."""
    while True:
        length, code = struct.unpack("!II", await reader.readexactly(8))
        if length != 8 or code not in (_PG_SSL_REQUEST, _PG_GSS_REQUEST):
            writer.close()  # a client that does not ask for TLS gets none here
            return False
        if code == _PG_SSL_REQUEST:
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(context)
            return True
        writer.write(b"N")  # no GSS encryption; the client asks again for TLS


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()
    finally:
        target.close()
