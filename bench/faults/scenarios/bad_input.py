"""Bad input: property-based fuzzing (Hypothesis) of everything a fleet takes in, against the real fleet.

Three fronts, all in one run:

* raw messages published straight to the command queues (:mod:`~bench.faults.scenarios.fuzz_messages`),
  each bad one after a good command: no worker crashes (the same processes, alive, at the end), each bad
  message in the dead-letter queue with an ``x-reason`` naming what is wrong, every good command applied;
* CSV files fed to ``recalls import`` (:mod:`~bench.faults.scenarios.fuzz_csv`): no traceback, each bad
  row in the reject report naming its field, each good row published once and applied;
* requests to a running batch API (:mod:`~bench.faults.scenarios.fuzz_api`): never a 5xx, and every
  refusal names the field.

The cases are drawn by Hypothesis with a fixed seed (:func:`~bench.faults.scenarios.fuzz.generated`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Sequence

import msgspec

from bench.faults.figures import Figures
from bench.faults.harness import FaultRun, Mode, fault_run
from bench.faults.scenarios import fuzz, fuzz_api, fuzz_csv, fuzz_messages
from bench.faults.scenarios.fuzz_messages import RawCase
from bench.faults.workload import Workload
from bench.fleet_throughput import REFERENCE, START, vin
from recalls.ops.dead_letters import DeadLetter
from recalls.shared.contracts import Command, CreateCommand, GetCommand
from recalls.shared.topology import LANES, routing_key

SHOWN = 5  # cases quoted in one problem


async def run(mode: Mode) -> Figures:
    cases = await asyncio.to_thread(_message_cases, mode.size(3, 25))
    async with fault_run("bad_input") as fleet:
        tag = fleet.prefix[-6:]
        pids = [worker.pid for worker in fleet.workers]
        goods = _good_commands(tag, len(cases))
        published = _publish(fleet, cases, goods, tag)
        csv_part = fuzz_csv.run(fleet, mode, tag)
        api_part = fuzz_api.run(fleet, mode)
        _, csv_result, api_result = await asyncio.gather(published, csv_part, api_part)
        workload = Workload.of([*goods, *csv_result.published])
        stalled = await _settled(fleet, workload, len(cases), mode.size(60, 300))
        letters = await fleet.dead_letters()
        figures = await fleet.figures(workload, expected_dead=len(cases))
        _judge_workers(figures, fleet, pids)
        _judge_goods(figures, cases, goods, fleet, letters)
    figures.mode = mode.name
    figures.commands_in = len(goods) + len(cases) + len(csv_result.published)
    _judge_messages(figures, cases, letters, tag)
    csv_result.judge(figures)
    api_result.judge(figures)
    if stalled:
        figures.problem(stalled)
    return figures


def _message_cases(per_kind: int) -> list[RawCase]:
    """``per_kind`` cases of each kind of bad message, the kinds taking turns."""
    drawn = [fuzz.generated(fuzz_messages.cases(kind), per_kind) for kind in fuzz_messages.kinds()]
    return [case for turn in itertools.zip_longest(*drawn) for case in turn if case is not None]


def _good_commands(tag: str, count: int) -> list[Command]:
    """Creates of new VINs, each followed by a get of it (DVSA applies these whatever the order)."""
    commands: list[Command] = []
    for n in range(count):
        target = vin(tag, "G", n // 2)
        if n % 2 == 0:
            commands.append(
                CreateCommand(
                    vin=target, manufacturer_campaign_reference=REFERENCE, recall_campaign_start_date=START
                )
            )
        else:
            commands.append(GetCommand(vin=target))
    return commands


def _bad_id(tag: str, index: int) -> str:
    return f"bad-{tag}-{index}"


async def _publish(fleet: FaultRun, cases: Sequence[RawCase], goods: Sequence[Command], tag: str) -> None:
    """A good command with odd headers, then a bad message, in turn (the good ones on each lane in turn)."""
    for index, (case, good) in enumerate(zip(cases, goods, strict=True)):
        await fleet.publish_raw(
            msgspec.json.encode(good),
            routing_key(good.verb, LANES[index % len(LANES)]),
            message_id=good.message_id,
            content_type="application/json",
            headers=case.good_headers,
        )
        await fleet.publish_raw(
            case.body,
            case.routing_key,
            message_id=_bad_id(tag, index),
            headers=case.headers,
            **case.properties,
        )


async def _settled(fleet: FaultRun, workload: Workload, dead: int, seconds: float) -> str:
    """Wait until every command has an outcome event or a dead letter, and ``dead`` dead letters are in.

    A good command may end in the dead-letter queue too (RabbitMQ's delivery limit, when a worker failed
    on it every time): it is then settled, and judged by :func:`_judge_goods`.  Returns what is missing.
    """
    deadline = time.monotonic() + seconds
    while True:
        letters = {letter.message_id for letter in await fleet.dead_letters()}
        waiting = workload.message_ids - fleet.outcomes.keys() - letters
        if not waiting and len(letters) >= dead:
            return ""
        if time.monotonic() > deadline:
            unsettled = f"{len(waiting)} commands unsettled, {len(letters)} of {dead} dead letters"
            return f"after {seconds:g} s: {unsettled}"
        if waiting:
            with contextlib.suppress(TimeoutError):  # wakes at the last outcome, or after a second
                await fleet.wait_for_outcomes(waiting, timeout=1.0)
        else:
            await asyncio.sleep(0.5)  # dead letters come with no event to await: the queue is read again


def _judge_goods(
    figures: Figures,
    cases: Sequence[RawCase],
    goods: Sequence[Command],
    fleet: FaultRun,
    letters: Sequence[DeadLetter],
) -> None:
    """Each good command sent with odd headers must have its outcome; name the headers of those without."""
    dead = {letter.message_id: letter for letter in letters}
    failed = [
        f"{good.verb} {good.vin} with headers {case.good_headers!r:.300}"
        + (f" -> dead-lettered ({dead[good.message_id].reason})" if good.message_id in dead else "")
        for case, good in zip(cases, goods, strict=True)
        if fleet.outcomes.get(good.message_id) is None or fleet.outcomes[good.message_id].result == "failed"
    ]
    figures.extra["good_without_outcome"] = len(failed)
    if failed:
        figures.problem(f"{len(failed)} good commands not applied, e.g. " + " || ".join(failed[:SHOWN]))


def _judge_workers(figures: Figures, fleet: FaultRun, pids: Sequence[int]) -> None:
    now = [worker.pid if worker.alive() else 0 for worker in fleet.workers]
    figures.extra["worker_pids_unchanged"] = now == list(pids)
    if now != list(pids):
        figures.problem(f"worker processes changed or died: {list(pids)} -> {now}")


def _judge_messages(
    figures: Figures, cases: Sequence[RawCase], letters: Sequence[DeadLetter], tag: str
) -> None:
    by_id = {letter.message_id: letter for letter in letters}
    missing, by_broker, by_dvsa, reasonless, reasons = [], [], [], [], {}
    for index, case in enumerate(cases):
        letter = by_id.get(_bad_id(tag, index))
        if letter is None:
            missing.append(case.shown())
        elif "x-death" in letter.headers:
            # RabbitMQ's own dead-lettering keeps the headers as sent: a worker failed on it every time.
            by_broker.append(f"{case.shown()} ({letter.headers.get('x-first-death-reason')})")
        elif not letter.headers.get("x-reason"):
            reasonless.append(case.shown())
        else:
            reasons[index] = letter.reason
        if letter is not None and "x-dvsa-status" in letter.headers:
            by_dvsa.append(f"{case.shown()} -> {letter.reason!r}")
    unnamed = fuzz_messages.unnamed(cases, reasons)
    figures.extra |= {
        "bad_messages": len(cases),
        "bad_kinds": dict(Counter(case.kind for case in cases)),
        "bad_dead_lettered": len(cases) - len(missing),
        "bad_dead_lettered_by_broker": len(by_broker),
        "bad_refused_by_dvsa": len(by_dvsa),
        "bad_without_x_reason": len(reasonless),
        "bad_reason_not_naming_field": len(unnamed),
    }
    for label, found in (
        ("bad messages not in the dead-letter queue", missing),
        ("bad messages dead-lettered by RabbitMQ at the delivery limit, not by a worker", by_broker),
        ("bad messages that reached DVSA (the fleet's own checks let them through)", by_dvsa),
        ("dead letters without an x-reason header", reasonless),
        ("dead letters whose reason does not name the bad field", unnamed),
    ):
        if found:
            figures.problem(f"{len(found)} {label}, e.g. " + " || ".join(found[:SHOWN]))
