"""Another language: a Node.js publisher (amqplib), written from docs/contract.md alone.

``bench/faults/node/publish.mjs`` makes a mixed workload itself (creates; creates then fixes; creates
then deletes; gets), publishes it with confirms and prints what it published.  Every body it printed
must decode under the fleet's own contract, and every command must be applied: an outcome event each,
and the sandbox's state record by record.  Two short runs check the publisher's side of the contract:
a command DVSA would certainly refuse is refused before anything is queued (exit 2), and a command the
broker cannot route makes it exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.faults.figures import Figures
from bench.faults.harness import Mode, fault_run
from bench.faults.workload import Workload
from recalls.shared.amqp import connect
from recalls.shared.contracts import Command
from recalls.shared.settings import Settings
from recalls.shared.validation import InvalidCommand, decode_command

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "publish.mjs"
NODE_TIMEOUT = 120.0
REFUSED_EXIT, BROKER_EXIT = 2, 1  # publish.mjs: a command refused before publishing; a nack or return
# DVSA would refuse this VIN (too short): the publisher must refuse it before anything is queued.
INVALID = [{"verb": "get", "vin": "TOO-SHORT"}]


@dataclass(frozen=True)
class NodeRun:
    code: int
    stdout: str
    stderr: str
    seconds: float


async def run(mode: Mode) -> Figures:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "amqplib").is_dir():
        raise RuntimeError("node or bench/faults/node/node_modules is missing: run scripts/setup")
    async with fault_run("other_language") as fleet:
        published = await _node(node, fleet.settings, "--generate", str(mode.size(60, 600)))
        commands, undecodable = _decoded(published.stdout)
        workload = Workload.of(commands)
        stalled = await fleet.stall(workload.message_ids, timeout=mode.size(90, 300))
        figures = await fleet.figures(workload)
        checks = await _contract_checks(node, fleet.settings)
    figures.mode = mode.name
    figures.extra |= {
        "node": (await _node_version(node)),
        "node_exit": published.code,
        "node_publish_s": round(published.seconds, 2),
        "undecodable": len(undecodable),
        **checks,
    }
    _judge(figures, published, undecodable, stalled, checks)
    return figures


def _judge(
    figures: Figures, published: NodeRun, undecodable: list[str], stalled: str, checks: dict[str, int]
) -> None:
    if published.code != 0:
        figures.problem(f"publish.mjs exited {published.code}: {published.stderr.strip()[-1000:]}")
    if figures.commands_in == 0:
        figures.problem("publish.mjs published nothing")
    if undecodable:
        figures.problem(f"{len(undecodable)} bodies break the contract, e.g. {undecodable[0]}")
    if stalled:
        figures.problem(stalled)
    if checks["invalid_exit"] != REFUSED_EXIT:
        figures.problem(f"an invalid command made publish.mjs exit {checks['invalid_exit']}, not 2")
    if checks["unroutable_exit"] != BROKER_EXIT:
        figures.problem(f"an unroutable command made publish.mjs exit {checks['unroutable_exit']}, not 1")


def _decoded(stdout: str) -> tuple[list[Command], list[str]]:
    """The commands publish.mjs printed, as the fleet reads them; and why each one it cannot read fails."""
    commands: list[Command] = []
    undecodable: list[str] = []
    for body in json.loads(stdout or "[]"):
        try:
            commands.append(decode_command(json.dumps(body).encode()))
        except InvalidCommand as exc:
            undecodable.append(f"{body.get('message_id')}: {exc}")
    return commands, undecodable


async def _contract_checks(node: str, settings: Settings) -> dict[str, int]:
    """publish.mjs's exit for a command it must refuse, and for one the broker returns unrouted."""
    refused = await _node(node, settings, "--commands", "-", stdin=json.dumps(INVALID))
    # An exchange of the commands' name with no queue bound: the broker returns what is published to it.
    lonely = f"{settings.prefix}-unrouted-{uuid.uuid4().hex[:6]}"
    connection = await connect(settings.amqp_url.get_secret_value(), name="faults-other-language")
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(f"{lonely}.commands", auto_delete=False)
        try:
            unrouted = await _node(node, settings, "--generate", "1", "--prefix", lonely)
        finally:
            await exchange.delete()
    return {"invalid_exit": refused.code, "unroutable_exit": unrouted.code}


async def _node(node: str, settings: Settings, *args: str, stdin: str | None = None) -> NodeRun:
    """Run publish.mjs; the broker URL goes in its environment (never on a command line)."""
    env = {
        **os.environ,
        "RECALLS_AMQP_URL": settings.amqp_url.get_secret_value(),
        "RECALLS_PREFIX": settings.prefix,
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), "--tag", settings.prefix[-8:], *args, env=env, cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else b""), NODE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return NodeRun(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


async def _node_version(node: str) -> str:
    process = await asyncio.create_subprocess_exec(node, "--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return out.decode().strip()
