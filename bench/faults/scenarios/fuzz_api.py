"""Requests for the bad_input scenario, sent to a running batch API (``POST /v1/recalls-batch/submit``).

The bodies are arbitrary bytes, JSON of any shape, and submit objects whose vins, csv, csvUrl and
webhookUrl hold anything from good VINs to broken CSV and hostile URLs.  The API must never answer
with a 5xx, and every refusal must be in its one error shape, its message naming the field.  No request
leaves this machine: csvUrl may name only a host that no case uses (so every csvUrl is refused before
any lookup), and webhooks are off (no secret), so every webhookUrl is refused as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from hypothesis import strategies as st

from bench.faults.figures import Figures
from bench.faults.harness import FaultRun, Mode
from bench.faults.scenarios import fuzz
from recalls.ops import dashboard
from recalls.producers.batch_api import create_app
from recalls.producers.config import publisher_config
from recalls.producers.publisher import Publisher
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import ApiKeys
from recalls.shared.store.database import Database

SUBMIT = "/v1/recalls-batch/submit"
MAX_VINS = 5  # a batch's most VINs here: every accepted batch costs DVSA calls
FIELDS = ("body", "vins", "csv", "csvUrl", "webhookUrl", "key")
SHOWN = 5


@dataclass(frozen=True)
class ApiCase:
    body: bytes
    keys: tuple[str, ...]  # the body's own keys when it is a JSON object: a refusal may name any of them

    def shown(self) -> str:
        return repr(self.body[:160])


def requests() -> st.SearchStrategy[ApiCase]:
    """Submit bodies of four kinds: raw bytes, JSON of any shape, odd submits, and valid ones."""
    raw = st.binary(max_size=200).map(lambda body: ApiCase(body, ()))
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    shapes = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    )
    kinds = {
        "raw": raw,
        "shape": shapes.map(_case),
        "odd": _submits().map(_case),
        "valid": _valid_submits().map(_case),
    }
    # The kind is drawn first, so that each comes about as often as the others.
    return st.sampled_from(list(kinds)).flatmap(kinds.__getitem__)


def _case(value: Any) -> ApiCase:
    keys = tuple(value) if isinstance(value, dict) else ()
    return ApiCase(json.dumps(value).encode(), keys)


def _submits() -> st.SearchStrategy[dict[str, Any]]:
    anything = st.none() | st.integers() | st.text(max_size=20) | st.lists(st.integers(), max_size=2)
    return st.fixed_dictionaries(
        {},
        optional={
            "vins": st.lists(_vin_items(), max_size=MAX_VINS + 2) | anything,
            "csv": _csv_texts() | anything,
            "csvUrl": _urls() | anything,
            "webhookUrl": _urls() | anything,
            "extra": anything,
        },
    )


def _valid_submits() -> st.SearchStrategy[dict[str, Any]]:
    """Submits the API must accept: a few good VINs (any case, padded) in vins, csv or both."""
    vins = st.lists(_good_vins(), min_size=1, max_size=MAX_VINS // 2)
    csv_text = st.builds(_csv_of, st.sampled_from(["", "vin", "name,VIN"]), vins)
    return st.fixed_dictionaries({"vins": vins}, optional={"csv": csv_text}) | st.fixed_dictionaries(
        {"csv": csv_text}
    )


def _csv_of(header: str, vins: list[str]) -> str:
    """CSV text of ``vins``: one a line, under a header row naming the vin column if there is one."""
    lines = [f"n{index},{vin}" if "," in header else vin for index, vin in enumerate(vins)]
    return "\n".join([header, *lines] if header else lines)


def _good_vins() -> st.SearchStrategy[str]:
    return st.builds(
        lambda v, lower, pad: f" {v} " if pad else v.lower() if lower else v,
        fuzz.vins(),
        st.booleans(),
        st.booleans(),
    )


def _vin_items() -> st.SearchStrategy[Any]:
    bad = st.text(max_size=20) | fuzz.spoiled(fuzz.vins()) | st.integers() | st.none()
    return _good_vins() | bad


def _csv_texts() -> st.SearchStrategy[str]:
    line = st.one_of(fuzz.vins(), fuzz.spoiled(fuzz.vins()), st.text(max_size=25), st.just('"unterminated'))
    header = st.sampled_from(["", "vin\n", "VIN,name\n", "name,Vin\n", "\ufeffvin\n"])
    return st.builds(
        lambda head, lines: head + "\n".join(lines), header, st.lists(line, max_size=MAX_VINS + 2)
    )


def _urls() -> st.SearchStrategy[str]:
    """URLs of every kind but the one host the API may fetch from (a random name no case draws)."""
    schemes = st.sampled_from(["https", "http", "ftp", "file", "javascript", "HTTPS", ""])
    hosts = st.sampled_from(
        ["127.0.0.1", "10.0.0.1", "[::1]", "169.254.169.254", "localhost", "example.com",
         "user:pw@example.com", "0", "[fe80::1]", "host\\evil", "ex ample.com", "xn--bcher-kva.example",
         "bücher.example", ""]
    )  # fmt: skip
    ports = st.sampled_from(["", ":0", ":443", ":99999", ":x"])
    built = st.builds(
        lambda s, h, p, path: f"{s}://{h}{p}/{path}", schemes, hosts, ports, st.text(max_size=20)
    )
    return (
        built
        | st.text(max_size=40)
        | st.text("a/", min_size=2049, max_size=2100).map(lambda path: "https://e.com/" + path)
    )


@dataclass
class ApiResult:
    requests: int = 0
    accepted: int = 0
    server_errors: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)

    def judge(self, figures: Figures) -> None:
        figures.extra |= {
            "api_requests": self.requests,
            "api_accepted": self.accepted,
            "api_5xx": len(self.server_errors),
            "api_errors_not_naming_field": len(self.unnamed),
        }
        if self.server_errors:
            figures.problem(f"{len(self.server_errors)} API 5xx: " + " || ".join(self.server_errors[:SHOWN]))
        if self.unnamed:
            figures.problem(
                f"{len(self.unnamed)} API errors not naming a field: " + " || ".join(self.unnamed[:SHOWN])
            )


async def run(fleet: FaultRun, mode: Mode) -> ApiResult:
    """Send the fuzzed requests to a batch API serving the run's fleet, one after another."""
    cases = await asyncio.to_thread(fuzz.generated, requests(), mode.size(60, 600))
    result = ApiResult()
    with tempfile.TemporaryDirectory(prefix="faults-api-") as scratch:
        settings = fleet.settings.model_copy(
            update={
                "sqlite_path": Path(scratch) / "store.db",
                "batch_max_vins": MAX_VINS,
                "csv_url_allowed_hosts": (f"csv-{uuid.uuid4().hex}.invalid",),
                "public_url": None,  # webhooks off
                # One key sends every case: the quotas would turn most valid submits into 429s.
                "api_rate_limit": 1_000_000,
                "api_max_open_batches": 1_000_000,
            }
        )
        async with _serving(settings) as (http, key):
            for case in cases:
                response = await http.post(
                    SUBMIT,
                    content=case.body,
                    params={"key": key},
                    headers={"content-type": "application/json"},
                )
                _check(result, case, response)
    return result


def _check(result: ApiResult, case: ApiCase, response: httpx.Response) -> None:
    result.requests += 1
    if response.status_code >= 500:
        result.server_errors.append(f"{response.status_code} for {case.shown()}: {response.text[:200]}")
        return
    if response.status_code < 400:
        result.accepted += 1
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    if not isinstance(body, dict) or body.get("success") is not False or not _names_a_field(message, case):
        result.unnamed.append(f"{response.status_code} for {case.shown()}: {response.text[:200]}")


def _names_a_field(message: str, case: ApiCase) -> bool:
    """Whether ``message`` starts with a field of the request: ``vins[3]: ...``, ``csv line 2: ...``."""
    return any(
        message.startswith(name) and message[len(name) : len(name) + 1] in ("[", ".", ":", " ")
        for name in (*FIELDS, *case.keys)
        if name
    )


@contextlib.asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The batch API under uvicorn on a loopback port, a client for it, and a key it accepts."""
    async with Database.connect(settings) as db, Publisher.connect(publisher_config(settings)) as publisher:
        _, key = await ApiKeys(db).create("bad input")
        listening = socket.create_server(("127.0.0.1", 0))
        host, port = listening.getsockname()[:2]
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, db, publisher, surfaces=[dashboard.surface]),
                log_config=None,
                lifespan="on",
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[listening]))
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http:
                # The socket listens already: the first request waits in its backlog until the app is up.
                yield http, key
        finally:
            server.should_exit = True
            await serving
            listening.close()
