"""Driving the batch API in integration tests: serving it over real HTTP, its error shape, expected results.

Shared by every test module that runs the API, so that none of them imports another test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import uvicorn
from fastapi import FastAPI

from recalls.ops import dashboard
from recalls.producers.batch_api import create_app
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.contracts import GetCommand, OutcomeEvent, Recall, Result, utc_now
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database
from recalls.shared.topology import Topology, delete

API = "/v1/recalls-batch"
LIGHT = {"retry_tiers": (1.0,), "batch_max_vins": 5}  # one retry tier: quorum queues are slow to declare


@dataclass
class Api:
    """A running API, a client for it, and a key it accepts."""

    http: httpx.AsyncClient
    key: str
    db: Database

    async def submit(self, body: object, key: str | None = None, **params: str) -> httpx.Response:
        headers = {"x-api-key": key or self.key}
        return await self.http.post(f"{API}/submit", json=body, params=params, headers=headers)

    async def get(self, what: str, batch_id: str, key: str | None = None) -> httpx.Response:
        headers = {"x-api-key": key or self.key}
        return await self.http.get(f"{API}/{what}", params={"batchId": batch_id}, headers=headers)

    async def status_until(self, batch_id: str, *states: str) -> dict[str, Any]:
        """The batch's status once it is one of ``states`` (a publish of a few messages: milliseconds)."""
        for _ in range(1000):
            data: dict[str, Any] = (await self.get("status", batch_id)).json()["data"]
            if data["status"] in states:
                return data
        raise AssertionError(f"batch {batch_id} never reached {states}: {data}")


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` under uvicorn on a loopback port, and a client for it once it answers."""
    listening = socket.create_server(("127.0.0.1", 0))
    host, port = listening.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    running = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as client:
            # The socket listens already: the probe waits in its backlog until the app has started.
            probe = asyncio.ensure_future(client.get("/openapi.json"))
            await asyncio.wait({running, probe}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                probe.cancel()
                running.result()
                raise AssertionError("uvicorn stopped at start")
            (await probe).raise_for_status()
            yield client
    finally:
        server.should_exit = True
        await running
        listening.close()


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    """The API on ``settings`` with its store and publisher, served, and a new key for it."""
    async with Database.connect(settings) as db, Publisher.connect(publisher_config(settings)) as publisher:
        _, key = await ApiKeys(db).create("fleet team")
        async with serving(create_app(settings, db, publisher, surfaces=[dashboard.surface])) as http:
            yield Api(http, key, db)


async def delete_topology(settings: Settings) -> None:
    """Delete the queues and exchanges ``settings`` declared, so tests leave nothing on the broker."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection, connection.channel() as channel:
        await delete(channel, Topology(settings.prefix, settings.retry_tiers))


def assert_error(response: httpx.Response, status: int, name: str, *fragments: str) -> None:
    """``response`` is the one error shape with ``status`` and ``name``, its message holding ``fragments``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "message"}, body
    assert (body["success"], body["error"]) == (False, name), body
    for fragment in fragments:
        assert fragment in body["message"], body


def outcome(command: GetCommand, result: Result, **fields: Any) -> OutcomeEvent:
    """The outcome of ``command`` after one attempt, completed now unless ``fields`` say otherwise."""
    now = utc_now()
    values: dict[str, Any] = {"attempts": 1, "first_seen_at": now, "completed_at": now, **fields}
    return OutcomeEvent(message_id=command.message_id, verb="get", vin=command.vin, result=result, **values)


def checked(vin: str, recalls: list[Recall], at: dt.datetime | None = None) -> OutcomeEvent:
    """A whole-vehicle get's outcome, as the cache remembers them."""
    return outcome(GetCommand(vin=vin), "applied", recalls=recalls, completed_at=at or utc_now())


def expected_results(held: list[dict[str, Any]], vins: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What the results must say of each of ``vins``, from the sandbox's own state."""
    expected: dict[str, dict[str, Any]] = {
        v: {"vin": v, "hasRecalls": False, "recallCount": 0, "recalls": []} for v in vins
    }
    for recall in held:
        entry = expected[recall["vin"]]
        fields = (
            "manufacturerCampaignReference",
            "dvsaCampaignReference",
            "recallCampaignStartDate",
            "repairStatus",
        )
        entry["recalls"].append({name: recall[name] for name in fields if recall.get(name)})
        entry["recallCount"] += 1
        entry["hasRecalls"] = entry["hasRecalls"] or recall["repairStatus"] != "FIXED"
    return expected


def by_vin(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Results keyed by VIN, each one's recalls in campaign order, to compare whatever order they came in."""
    key = lambda recall: recall["manufacturerCampaignReference"]  # noqa: E731
    return {r["vin"]: {**r, "recalls": sorted(r["recalls"], key=key)} for r in results}


class UvicornStarted(logging.Handler):
    """Keeps the URL uvicorn says it listens on, and sets an event then."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()
        self.url = ""

    def emit(self, record: logging.LogRecord) -> None:
        said = record.getMessage()
        if said.startswith("Uvicorn running on "):
            self.url = said.split()[3]
            self.event.set()


@contextlib.asynccontextmanager
async def running_ops_api(settings: Settings) -> AsyncIterator[Api]:
    """The API as ``recalls api`` builds it: one broker connection for the publisher and the dashboard."""
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    topology = Topology(settings.prefix, settings.retry_tiers)
    async with (
        connection,
        Database.connect(settings) as db,
        Publisher.on_connection(connection, topology, declare=True) as publisher,
    ):
        _, key = await ApiKeys(db).create("operations")
        async with serving(
            create_app(settings, db, publisher, connection=connection, surfaces=[dashboard.surface])
        ) as http:
            yield Api(http, key, db)
