"""The DVSA transport against real sockets on loopback: each way a call can fail says whether DVSA may
have received it, since a create or delete that may have reached DVSA is settled differently from one
that surely did not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bench.ports import free_port
from recalls.shared.dvsa.transport import MAX_BODY_BYTES, RawReply, TransportFailure, pooled_transport

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(serve: Serve) -> AsyncIterator[str]:
    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield f"http://127.0.0.1:{port}/recalls"


async def request(url: str, timeout: float = 5) -> RawReply:
    async with pooled_transport(url, timeout) as transport:
        return await transport.request("DELETE", url, params={"a": "b"}, json=None, headers={})


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def test_nothing_listening_is_surely_unsent() -> None:
    with pytest.raises(TransportFailure) as failure:
        await request(f"http://127.0.0.1:{free_port()}/recalls")
    assert (failure.value.kind, failure.value.maybe_sent) == ("ConnectError", False)


async def test_a_connection_closed_after_the_request_may_have_been_applied() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with server(hang_up) as url:
        with pytest.raises(TransportFailure) as failure:
            await request(url)
    assert (failure.value.kind, failure.value.maybe_sent) == ("RemoteProtocolError", True)


async def test_a_call_is_never_sent_twice_when_a_kept_connection_drops() -> None:
    """Each send is a request at DVSA (it counts against the limit, and may be applied): when a reused
    connection drops, the transport says so and sends nothing again (aiohttp's client would)."""
    received: list[bytes] = []

    async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")  # kept alive
        await writer.drain()
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()  # the second request read, and no answer

    async with server(answer_then_hang_up) as url, pooled_transport(url, 5) as transport:
        first = await transport.request("GET", url, params=None, json=None, headers={})
        with pytest.raises(TransportFailure) as failure:
            await transport.request("DELETE", url, params=None, json=None, headers={})
    assert first.status == 200
    assert (failure.value.kind, failure.value.maybe_sent) == ("RemoteProtocolError", True)
    assert [request.split(b" ", 1)[0] for request in received] == [b"GET", b"DELETE"]


async def test_no_answer_in_time_may_have_been_applied() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()

    async with server(never_answer) as url:
        with pytest.raises(TransportFailure) as failure:
            await request(url, timeout=0.3)
    assert (failure.value.kind, failure.value.maybe_sent) == ("ReadTimeout", True)


@pytest.mark.parametrize("length", [MAX_BODY_BYTES, 4 * MAX_BODY_BYTES])
async def test_an_answer_is_read_whole_up_to_the_bound_and_no_further(length: int) -> None:
    finished = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nRetry-After: 3\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError):  # the client stops reading past the bound
            for _ in range(length // 65536):
                writer.write(b"x" * 65536)
                await writer.drain()
        writer.close()
        finished.set()

    async with server(answer) as url:
        reply = await request(url)
        await finished.wait()
    assert (reply.status, reply.retry_after) == (200, "3")
    assert (len(reply.body), reply.cut) == (MAX_BODY_BYTES, length > MAX_BODY_BYTES)


def answer_204(received: list[bytes]) -> Serve:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        received.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    return answer


async def test_the_query_headers_and_json_body_go_as_given() -> None:
    received: list[bytes] = []
    async with server(answer_204(received)) as url, pooled_transport(url, 5) as transport:
        reply = await transport.request(
            "PUT", url, params={"ref": "R/1 2", "vin": "A"}, json={"d": "é"}, headers={"x-api-key": "k"}
        )
    head, _, body = received[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert reply.status == 204
    assert lines[0] == b"PUT /recalls?ref=R%2F1+2&vin=A HTTP/1.1"
    assert {b"x-api-key: k", b"Content-Type: application/json", b"Content-Length: 10"} <= set(lines)
    assert body == '{"d":"é"}'.encode()


async def test_the_environments_proxy_carries_the_call_unless_the_host_is_exempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator behind a forward proxy sets HTTP(S)_PROXY as for curl; NO_PROXY exempts a host."""
    received: list[bytes] = []
    async with server(answer_204(received)) as proxy_url:
        proxy = proxy_url.removesuffix("/recalls")
        monkeypatch.setenv("HTTP_PROXY", proxy.replace("http://", "http://user:p%40ss@"))
        monkeypatch.setenv("NO_PROXY", "exempt.test")
        async with pooled_transport("http://dvsa.test/", 5) as transport:
            reply = await transport.request(
                "GET", "http://dvsa.test/recalls/V", params=None, json=None, headers={}
            )
        async with pooled_transport("http://exempt.test/", 0.5) as transport:
            with pytest.raises(TransportFailure) as failure:  # straight to a host that does not resolve
                await transport.request("GET", "http://exempt.test/r", params=None, json=None, headers={})
    assert reply.status == 204
    assert received[0].startswith(b"GET http://dvsa.test/recalls/V HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz" in received[0]  # user:p@ss
    assert (len(received), failure.value.maybe_sent) == (1, False)
