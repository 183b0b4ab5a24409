"""Publishing from a child process, so a bulk load's own work and the AMQP client's run on two cores.

A historic load reads, validates and journals every row, and the AMQP client spends several hundred
microseconds of CPU on every message it publishes.  In one process the two share one interpreter lock
and the load publishes about a fifth slower than the client alone could.  :class:`PublisherProcess`
offers :meth:`~recalls.producers.publisher.Publisher.publish_many` to the load while a child process
(``python -m recalls.producers.publish_process``) does the publishing with a :class:`Publisher` of its own.

The two talk over the child's stdin and stdout in length-prefixed msgpack frames: first the settings
(secrets included: a pipe, never the command line or the environment), then the child's ``Ready`` or
``Failed``, then requests and their replies, matched by id.  The child ignores Ctrl-C: the parent
decides when to stop, by closing the child's stdin, and the child then finishes the requests it holds
and exits.  If the child dies, every request it held is answered with :class:`PublishFailed`: it may
have been queued, and publishing it again is safe (the same message_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import struct
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
from pydantic import SecretStr

from recalls.producers.config import publisher_config
from recalls.producers.publisher import DEFAULT_MAX_IN_FLIGHT, Publisher, PublishResult, validated_or_error
from recalls.shared.amqp import BrokerUnreachable, PublishFailed
from recalls.shared.contracts import Command, Lane
from recalls.shared.settings import Settings, load_settings
from recalls.shared.validation import InvalidCommand

log = logging.getLogger("recalls.publish_process")

_LENGTH = struct.Struct(">I")


class _Ready(msgspec.Struct, tag="ready"):
    pass


class _Failed(msgspec.Struct, tag="failed"):
    reason: str


class _Request(msgspec.Struct, tag="request"):
    id: int
    lane: Lane
    max_in_flight: int
    commands: list[Command]


class _Reply(msgspec.Struct, tag="reply"):
    id: int
    errors: list[str | None]  # one per command: None once confirmed, else why not


_FROM_CHILD = msgspec.msgpack.Decoder(_Ready | _Failed | _Reply)
_REQUEST = msgspec.msgpack.Decoder(_Request)
_SETTINGS = msgspec.msgpack.Decoder(dict[str, Any])


class PublisherProcess:
    """A publisher whose AMQP work runs in a child process; start it with :meth:`start`."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self._child = child
        self._waiting: dict[int, tuple[asyncio.Future[list[str | None]], int]] = {}  # id: reply, size
        self._next_id = 0
        self._gone: str | None = None  # why the child cannot take requests any more

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, settings: Settings, *, name: str) -> AsyncIterator[PublisherProcess]:
        """Start the child and wait until it is connected; raise :class:`BrokerUnreachable` if it cannot.

        Raises :class:`~recalls.producers.config.PublisherConfigError` before starting the child when the
        settings describe no publisher configuration the child could use.
        """
        publisher_config(settings, name=name)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recalls.producers.publish_process",
            name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        process = cls(child)
        try:
            assert child.stdin is not None and child.stdout is not None
            await _write(child.stdin, _settings_frame(settings))
            frame = await _read(child.stdout)
            first = None if frame is None else _FROM_CHILD.decode(frame)
            if not isinstance(first, _Ready):
                reason = first.reason if isinstance(first, _Failed) else "exited before it was ready"
                raise BrokerUnreachable(reason)
            replies = asyncio.create_task(process._take_replies(child.stdout))
            try:
                yield process
            finally:
                child.stdin.close()  # the child finishes what it holds, then exits
                await child.wait()
                await replies
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._child.pid

    async def publish_many(
        self,
        commands: Iterable[Command],
        *,
        lane: Lane = "live",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        validated: bool = False,
    ) -> list[PublishResult]:
        """As :meth:`Publisher.publish_many`; the child publishes, this process only validates."""
        checked = list(commands) if validated else [validated_or_error(command) for command in commands]
        sendable = [command for command in checked if not isinstance(command, InvalidCommand)]
        errors = await self._ask(sendable, lane, max_in_flight) if sendable else []
        answers = iter(errors)
        results: list[PublishResult] = []
        for item in checked:
            if isinstance(item, InvalidCommand):
                results.append(item)
                continue
            error = next(answers)
            results.append(item.message_id if error is None else PublishFailed(error))
        return results

    async def _ask(self, commands: list[Command], lane: Lane, max_in_flight: int) -> list[str | None]:
        """The child's answer for each command: ``None`` once confirmed, else why not."""
        if self._gone is not None:
            return [self._gone] * len(commands)
        self._next_id += 1
        request = _Request(self._next_id, lane, max_in_flight, commands)
        reply: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = (reply, len(commands))
        assert self._child.stdin is not None
        try:
            await _write(self._child.stdin, msgspec.msgpack.encode(request))
        except (ConnectionError, RuntimeError):  # the pipe closed: the child is gone
            self._waiting.pop(request.id, None)
            return [_lost(self._child)] * len(commands)
        return await reply

    async def _take_replies(self, stdout: asyncio.StreamReader) -> None:
        """Hand each reply to its request; when the child goes, answer what it still held."""
        while (frame := await _read(stdout)) is not None:
            reply = _FROM_CHILD.decode(frame)
            if isinstance(reply, _Reply) and (waiting := self._waiting.pop(reply.id, None)) is not None:
                waiting[0].set_result(reply.errors)
        await self._child.wait()
        self._gone = _lost(self._child)
        for reply, size in self._waiting.values():
            reply.set_result([self._gone] * size)
        self._waiting.clear()


def _lost(child: asyncio.subprocess.Process) -> str:
    return (
        f"the publishing process exited (code {child.returncode}) before the broker confirmed; "
        "it may be queued: publish it again with the same message_id"
    )


def _settings_frame(settings: Settings) -> bytes:
    values = settings.model_dump(mode="json")  # secrets come out masked: put them back
    values.update(
        (name, value.get_secret_value()) for name, value in settings if isinstance(value, SecretStr)
    )
    return msgspec.msgpack.encode(values)


async def _write(stream: asyncio.StreamWriter, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    await stream.drain()


async def _read(stream: asyncio.StreamReader) -> bytes | None:
    """The next frame; ``None`` at the end of the stream."""
    try:
        (size,) = _LENGTH.unpack(await stream.readexactly(_LENGTH.size))
        return await stream.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


# --- the child ------------------------------------------------------------------------------------------


async def _serve(name: str) -> int:
    stdin, stdout = await _standard_streams()
    frame = await _read(stdin)
    if frame is None:
        return 1
    try:
        settings = load_settings(**_SETTINGS.decode(frame))
        async with Publisher.connect(publisher_config(settings, name=name)) as publisher:
            await _write(stdout, msgspec.msgpack.encode(_Ready()))
            async with asyncio.TaskGroup() as group:
                while (request := await _read(stdin)) is not None:
                    group.create_task(_answer(publisher, _REQUEST.decode(request), stdout))
    except BrokerUnreachable as exc:
        await _write(stdout, msgspec.msgpack.encode(_Failed(str(exc))))
        return 1
    return 0


async def _answer(publisher: Publisher, request: _Request, stdout: asyncio.StreamWriter) -> None:
    results = await publisher.publish_many(
        request.commands, lane=request.lane, max_in_flight=request.max_in_flight, validated=True
    )
    errors = [None if isinstance(result, str) else str(result) for result in results]
    await _write(stdout, msgspec.msgpack.encode(_Reply(request.id, errors)))


async def _standard_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), sys.stdout.buffer
    )
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to act on
    for library in ("aiormq", "aio_pika"):  # the parent reports failures, once
        logging.getLogger(library).setLevel(logging.CRITICAL)
    sys.exit(asyncio.run(_serve(sys.argv[1] if len(sys.argv) > 1 else "recalls-publish-process")))


if __name__ == "__main__":
    main()
