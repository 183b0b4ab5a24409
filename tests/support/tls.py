"""A proxy on loopback that speaks TLS to its clients and plain TCP to a service behind it (RabbitMQ,
Redis, PostgreSQL), so the fleet's TLS settings meet a real handshake without reconfiguring the
machine's services.  Its certificate comes from :mod:`tests.support.certificates`; the forwarding is the
fault suite's :class:`bench.faults.tcp_proxy.TcpProxy`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator

from bench.faults.tcp_proxy import TcpProxy
from tests.support.certificates import Certificate

_PG_SSL_REQUEST = 80877103  # PostgreSQL's SSLRequest code; the server answers one byte, then TLS starts
_PG_GSS_REQUEST = 80877104


def server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certfile, certificate.keyfile)
    return context


@contextlib.asynccontextmanager
async def tls_proxy(
    certificate: Certificate, upstream_port: int, *, postgres: bool = False
) -> AsyncIterator[TcpProxy]:
    """TLS on a free loopback port in front of ``upstream_port``; ``postgres``: TLS after SSLRequest.

    The proxy's ``sessions`` counts the TLS sessions it has carried."""
    proxy = TcpProxy(
        "127.0.0.1",
        upstream_port,
        tls=server_context(certificate),
        preamble=_postgres_ssl_request if postgres else None,  # PostgreSQL starts in the clear and upgrades
    )
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _postgres_ssl_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Answer PostgreSQL's SSLRequest with yes, after which TLS starts; False: no TLS asked."""
    while True:
        length, code = struct.unpack("!II", await reader.readexactly(8))
        if length != 8 or code not in (_PG_SSL_REQUEST, _PG_GSS_REQUEST):
            return False  # a client that does not ask for TLS gets none here
        if code == _PG_SSL_REQUEST:
            writer.write(b"S")
            await writer.drain()
            return True
        writer.write(b"N")  # no GSS encryption; the client asks again for TLS
