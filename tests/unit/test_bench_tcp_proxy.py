"""The fault suite's TCP proxy: a hang holds bytes (and closes) until restore, a cut closes and refuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.faults.tcp_proxy import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    running = TcpProxy("127.0.0.1", server.sockets[0].getsockname()[1])
    await running.start()
    try:
        yield running
    finally:
        await running.close()
        server.close()
        await server.wait_closed()


async def _connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _closed(reader: asyncio.StreamReader) -> bool:
    """The link ended: an end of file, or a reset (the proxy aborts its sockets)."""
    try:
        return await asyncio.wait_for(reader.read(10), 5) == b""
    except ConnectionResetError:
        return True


async def test_a_hang_holds_the_bytes_and_restore_delivers_them(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"before")
    assert await reader.readexactly(6) == b"before"
    proxy.hang()
    writer.write(b"during")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(6), 0.3)  # held: the socket stays open, nothing arrives
    await proxy.restore()
    assert await asyncio.wait_for(reader.readexactly(6), 5) == b"during"
    writer.close()


async def test_a_connection_made_during_a_hang_waits_for_the_restore(proxy: TcpProxy) -> None:
    proxy.hang()
    reader, writer = await _connect(proxy)
    writer.write(b"late")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    await proxy.restore()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"late"
    writer.close()


async def test_a_cut_closes_every_link_and_refuses_until_restored(proxy: TcpProxy) -> None:
    reader, _ = await _connect(proxy)
    await proxy.cut()
    assert await _closed(reader)
    with pytest.raises(OSError):
        await _connect(proxy)
    await proxy.restore()
    reader, writer = await _connect(proxy)
    writer.write(b"again")
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"again"
    writer.close()
