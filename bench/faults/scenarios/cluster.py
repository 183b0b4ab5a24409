"""A three-node RabbitMQ cluster loses the node leading the command queues, twice, under load.

``scripts/cluster`` starts three nodes on loopback and joins them; the fleet (three workers, the
harness's publisher and outcome collector) gets all three in ``RECALLS_AMQP_URL``, and declares the
topology once they are up, so each quorum queue has a replica on every node.  Half the workload is
published, then twice: the node leading ``<prefix>.create`` is stopped as a crash would stop it, the
rest of the workload goes out meanwhile (through the publisher's failover), and the node is started
again.  The promises as in every scenario: nothing lost, nothing applied twice, no 429, at most the
limit in any second; and the recovery after each stop, from the DVSA calls' own arrival times.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench.faults.figures import Figures
from bench.faults.harness import Mode, fault_run
from bench.faults.scenarios.outages import run_tool
from bench.faults.workload import Workload

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "cluster"
WORKERS = 3
STOPS = 2


async def cluster(*args: str) -> str:
    """``bash scripts/cluster ARGS``: what it printed."""
    return await run_tool("bash", str(SCRIPT), *args)


async def run(mode: Mode) -> Figures:
    workload = Workload.mixed(uuid.uuid4().hex[:6], mode.size(1200, 3000))
    parts = [workload.commands[i :: STOPS + 1] for i in range(STOPS + 1)]
    url = (await cluster("start")).splitlines()[-1]
    stops: list[dict[str, object]] = []
    try:
        async with fault_run("cluster", workers=WORKERS, amqp_url=url) as fleet:
            leading = fleet.topology.command_queue("create", "live")
            replicas = len((await cluster("members", leading)).split())
            await fleet.publish(parts[0])
            for n in range(STOPS):
                await asyncio.sleep(mode.size(2, 8))  # the scenario's cadence: under load before each stop
                node = await cluster("leader", leading)
                fleet.fault(f"stop #{n + 1}: node {node}, leading {leading.removeprefix(fleet.prefix + '.')}")
                await cluster("stop-node", node)
                await fleet.publish(parts[n + 1])  # through a publisher whose node may be the one gone
                await asyncio.sleep(mode.size(3, 10))  # the length of the outage is the fault itself
                await cluster("start-node", node)
                stops.append({"node": int(node), "new_leader": int(await cluster("leader", leading))})
            stalled = await fleet.stall(workload.message_ids, timeout=mode.size(180, 400))
            figures = await fleet.figures(workload)
    finally:
        await cluster("stop")
    figures.mode = mode.name
    figures.extra |= {"workers": WORKERS, "nodes": 3, "replicas_per_queue": replicas, "stops": stops}
    if replicas != 3:
        figures.problem(f"{leading} has {replicas} replicas, not one on each of the 3 nodes")
    if stalled:
        figures.problem(stalled)
    return figures
