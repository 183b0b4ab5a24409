"""TLS on loopback for tests: a throwaway certificate authority, and a proxy that speaks TLS to its
clients and plain TCP to a service behind it (RabbitMQ, Redis, PostgreSQL), so the fleet's TLS settings
meet a real handshake without reconfiguring the machine's services."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PG_SSL_REQUEST = 80877103  # PostgreSQL's SSLRequest code; the server answers one byte, then TLS starts
_PG_GSS_REQUEST = 80877104


@dataclass(frozen=True)
class Authority:
    """A CA certificate file and a server certificate for ``localhost`` and 127.0.0.1 that it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_authority(folder: Path) -> Authority:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(subject_name=_name("recalls test CA"), issuer_name=_name("recalls test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder(subject_name=_name("localhost"), issuer_name=ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    authority = Authority(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    authority.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    authority.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    authority.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return authority


@dataclass
class TlsProxy:
    """Where the proxy listens, and how many TLS sessions it has carried."""

    port: int
    sessions: int = 0


@contextlib.asynccontextmanager
async def tls_proxy(
    authority: Authority, upstream_port: int, *, postgres: bool = False
) -> AsyncIterator[TlsProxy]:
    """TLS on a free loopback port in front of ``upstream_port``; ``postgres``: TLS after SSLRequest."""
    context = authority.server_context()
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
