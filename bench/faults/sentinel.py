"""A Redis that fails over, on loopback, for the fault suite: one master, one replica, three Sentinels.

Each is a ``redis-server`` process of the machine's own (a Sentinel is ``redis-server CONF --sentinel``)
with its files in a scratch directory, on free ports, nothing persisted.  The Sentinels watch the
master as :data:`SERVICE` with a quorum of two and declare it down after :data:`DOWN_AFTER_MS`; killing
the master (SIGKILL, as a crash) makes them promote the replica.  A killed node is started again as a
replica of the master of the moment, as Redis's own advice has it for nodes without persistence: one
started empty as a master, while a Sentinel still names it, would run a second, empty budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from bench.ports import free_port

SERVICE = "recalls-main"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
ANSWER_PATIENCE_S = 30.0


@dataclass
class SentinelSet:
    """The running set; :meth:`url` is the ``RECALLS_REDIS_URL`` that reaches it through the Sentinels."""

    scratch: Path
    data_ports: list[int]  # the two Redis nodes; which one is master changes
    sentinel_ports: list[int]
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)

    def url(self) -> str:
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{sentinels}/{SERVICE}/0"

    async def master_port(self) -> int:
        """The master's port as most Sentinels name it (one may not have heard of a failover yet)."""
        named = Counter(port for port in await asyncio.gather(*map(self._named, self.sentinel_ports)) if port)
        if named:
            port, votes = named.most_common(1)[0]
            if votes > len(self.sentinel_ports) // 2:
                return port
        raise RuntimeError("no master named by most Sentinels")

    async def _named(self, sentinel_port: int) -> int | None:
        client = aioredis.Redis(host="127.0.0.1", port=sentinel_port, socket_timeout=2)
        try:
            # The raw reply: redis-py's parser of it fails on a plain client (an argument it passes).
            reply = await client.execute_command(  # type: ignore[no-untyped-call]  # redis-py: untyped
                "SENTINEL", "get-master-addr-by-name", SERVICE
            )
            return int(reply[1])
        except (RedisError, OSError, TypeError, ValueError):
            return None
        finally:
            await client.aclose()

    async def kill(self, port: int) -> None:
        """SIGKILL the Redis node on ``port``, as a crash."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def start_data_node(self, port: int, *, replica_of: int | None = None) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.scratch)]
        argv += ["--save", "", "--appendonly", "no"]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        await self._start(port, argv)

    async def new_master(self, old: int) -> int:
        """Wait until the Sentinels name a master other than ``old``; its port."""
        async with asyncio.timeout(ANSWER_PATIENCE_S + FAILOVER_TIMEOUT_MS / 1000):
            while (port := await self._master_or_none()) in (old, None):  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # nothing to await but the Sentinels' answer
        assert port is not None
        return port

    async def _master_or_none(self) -> int | None:
        try:
            return await self.master_port()
        except RuntimeError:
            return None

    async def start_sentinel(self, port: int, master: int) -> None:
        conf = self.scratch / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.scratch}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        await self._start(port, ["redis-server", str(conf), "--sentinel"])

    async def _start(self, port: int, argv: list[str]) -> None:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        self.processes[port] = process
        client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            async with asyncio.timeout(ANSWER_PATIENCE_S):
                while True:
                    with contextlib.suppress(RedisError, OSError):
                        if await client.ping():
                            return
                    await asyncio.sleep(0.05)  # a new process: nothing to await but its port
        finally:
            await client.aclose()

    async def replicating(self, replica: int) -> None:
        """Return once ``replica`` has its master's data (its link is up)."""
        client = aioredis.Redis(host="127.0.0.1", port=replica, socket_timeout=1)
        try:
            async with asyncio.timeout(ANSWER_PATIENCE_S):
                while (await client.info("replication")).get("master_link_status") != "up":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # replication state is only polled
        finally:
            await client.aclose()

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                await process.wait()
        self.processes.clear()


@contextlib.asynccontextmanager
async def sentinel_set() -> AsyncIterator[SentinelSet]:
    """A master, a replica of it and three Sentinels watching them; all killed and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="faults-sentinel-") as scratch:
        nodes = SentinelSet(Path(scratch), [free_port(), free_port()], [free_port() for _ in range(3)])
        try:
            master, replica = nodes.data_ports
            await nodes.start_data_node(master)
            await nodes.start_data_node(replica, replica_of=master)
            await nodes.replicating(replica)
            for port in nodes.sentinel_ports:
                await nodes.start_sentinel(port, master)
            yield nodes
        finally:
            await nodes.stop()
