"""The committed AsyncAPI document is the code's: its topology, its messages, its headers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from click.testing import CliRunner

from recalls.cli.schemas import schemas
from recalls.shared.asyncapi import (
    ASYNCAPI_PATH,
    DEAD_LETTER_HEADERS,
    PREFIX,
    RETRY_HEADERS,
    asyncapi_document,
    render_asyncapi,
    stale_asyncapi,
)
from recalls.shared.contracts import VERBS
from recalls.shared.dvsa.client import DvsaReply
from recalls.shared.schema_export import SCHEMA_DIR
from recalls.shared.topology import EVENT_KEYS, FAILED_EVENT_KEY, LANES, Topology, declared_names
from recalls.workers.attempts import Attempts
from recalls.workers.handler import _dvsa_headers
from recalls.workers.reporting import Reporter

REGENERATE = "run `.venv/bin/recalls schemas` and commit shared/asyncapi.json"
KEY = re.compile(r"^[A-Za-z0-9_\-]+$")  # keys tools accept for channels, operations and components


def key_of(*parts: str) -> str:
    return "_".join(parts).replace(".", "_")


def channel_key(kind: str, name: str) -> str:
    return key_of(kind, name.removeprefix(PREFIX + "."))


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return loaded


def resolve(root: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = root
    for escaped in ref[2:].split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


def test_the_committed_document_equals_what_the_code_renders() -> None:
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == render_asyncapi(), (
        f"asyncapi.json is stale: {REGENERATE}"
    )
    assert not stale_asyncapi()


def test_it_has_the_required_fields_of_asyncapi_3() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["defaultContentType"] == "application/json"
    for server in doc["servers"].values():
        assert server["host"] and server["protocol"] == "amqp"
    for section in (doc["channels"], doc["operations"], *doc["components"].values()):
        assert section and all(KEY.match(key) for key in section), sorted(section)


def test_every_reference_resolves_and_operations_use_their_own_channels_messages() -> None:
    doc = document()
    for ref in refs(doc):
        resolve(doc, ref)
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        channel = resolve(doc, channel_ref)
        assert operation["messages"], name
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages must be messages of its channel.
            assert message["$ref"].startswith(channel_ref + "/messages/"), (name, message)
            assert resolve(doc, message["$ref"]) in channel["messages"].values()
    for channel in doc["channels"].values():
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/")


def test_every_channel_is_a_name_the_topology_declares_and_every_name_a_channel() -> None:
    doc = document()
    topology = Topology(PREFIX)
    declared = {tuple(line.split(" ", 1)) for line in declared_names(topology)}
    declared.add(("exchange", topology.stats_exchange))  # declared by workers and the API, not by topology
    described = set()
    for key, channel in doc["channels"].items():
        kind = "exchange" if channel["bindings"]["amqp"]["is"] == "routingKey" else "queue"
        assert key == channel_key(kind, channel["address"])
        assert channel["bindings"]["amqp"][kind]["name"] == channel["address"]
        assert set(re.findall(r"{(\w+)}", channel["address"])) == set(channel["parameters"]) == {"prefix"}
        described.add((kind, channel["address"]))
    assert described == declared


def test_queues_are_durable_quorum_queues_and_exchanges_durable_but_the_stats() -> None:
    topology = Topology(PREFIX)
    channels = document()["channels"]
    for channel in channels.values():
        amqp = channel["bindings"]["amqp"]
        if amqp["is"] == "queue":
            assert amqp["queue"]["durable"] and channel["x-arguments"]["x-queue-type"] == "quorum"
        else:
            assert amqp["exchange"]["durable"] == (channel["address"] != topology.stats_exchange)
    kinds = {
        topology.commands_exchange: "direct",
        topology.events_exchange: "topic",
        topology.dead_exchange: "fanout",
        topology.retry_name(0): "fanout",
    }
    for name, kind in kinds.items():
        assert channels[channel_key("exchange", name)]["bindings"]["amqp"]["exchange"]["type"] == kind
    retry = channels[channel_key("queue", topology.retry_name(0))]["x-arguments"]
    assert retry["x-message-ttl"] == int(topology.retry_tiers[0] * 1000)
    assert retry["x-dead-letter-exchange"] == topology.commands_exchange
    assert channels["queue_ledger"]["x-bound-to"] == [
        {"exchange": topology.events_exchange, "routingKey": "#"}
    ]


def test_every_verb_lane_and_event_key_appears() -> None:
    doc = document()
    topology = Topology(PREFIX)
    operations = doc["operations"]
    for verb in VERBS:
        for lane in LANES:
            key = topology.routing_key(verb, lane)
            publish = operations[key_of("publish", key)]
            assert publish["action"] == "send" and publish["bindings"]["amqp"]["cc"] == [key]
            assert (
                publish["bindings"]["amqp"]["deliveryMode"] == 2 and publish["bindings"]["amqp"]["mandatory"]
            )
            assert publish["messages"] == [{"$ref": f"#/channels/exchange_commands/messages/{verb}"}]
            consume = operations[key_of("consume", key)]
            queue = topology.command_queue(verb, lane)
            assert consume["action"] == "receive"
            assert resolve(doc, consume["channel"]["$ref"])["address"] == queue
            assert resolve(doc, consume["channel"]["$ref"])["x-bound-to"] == [
                {"exchange": topology.commands_exchange, "routingKey": key}
            ]
    for key in [*EVENT_KEYS.values(), FAILED_EVENT_KEY]:
        emit = operations[key_of("emit", key)]
        assert emit["action"] == "send" and emit["bindings"]["amqp"]["cc"] == [key]
        assert key_of(key) in doc["channels"]["queue_ledger"]["messages"]
        assert doc["components"]["messages"][key_of(key)]["bindings"]["amqp"]["messageType"] == key


def test_payloads_are_the_committed_json_schemas() -> None:
    doc = document()
    components = doc["components"]["schemas"]
    text = json.dumps(components)
    assert "#/$defs/" not in text
    for path in SCHEMA_DIR.glob("*.json"):
        defs = json.loads(path.read_text(encoding="utf-8"))["$defs"]
        for name, schema in defs.items():
            rewritten = json.loads(json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/'))
            assert components[name] == rewritten, f"{name} of {path.name} differs: {REGENERATE}"
    for verb in VERBS:
        message = doc["components"]["messages"][verb]
        assert message["contentType"] == "application/json"
        assert resolve(doc, message["payload"]["$ref"])["properties"]["verb"]["enum"] == [verb]
        assert "idempotency key" in message["x-amqp-properties"]["message_id"]


async def test_the_documented_headers_are_those_the_workers_set() -> None:
    """The reporter dead-letters onto a stand-in channel that keeps what it was asked to publish."""
    attempts = Attempts(count=1, first_seen=0.0, maybe_applied=False, history=("500",))
    assert set(RETRY_HEADERS) == set(attempts.headers())
    dvsa = set(_dvsa_headers(DvsaReply(status=500, body={"errorCode": "X", "errorMessage": "y"})))

    published: list[Any] = []  # the properties of each message the stand-in channel was given

    async def basic_publish(body: bytes, **frame: Any) -> None:
        published.append(frame["properties"])

    underlay = SimpleNamespace(
        basic_publish=basic_publish, connection=SimpleNamespace(url="amqp://fleet@mq/")
    )

    async def get_underlay_channel() -> Any:
        return underlay

    topology = Topology(PREFIX)
    channel = SimpleNamespace(is_closed=False, get_underlay_channel=get_underlay_channel)
    dead = cast(AbstractExchange, SimpleNamespace(name=topology.dead_exchange, channel=channel))
    original = SimpleNamespace(
        body=b"{}",
        routing_key="fix",
        content_type="application/json",
        message_id="m-1",
        correlation_id=None,
        reply_to=None,
        type="fix",
        timestamp=None,
    )
    reporter = Reporter(cast(Any, None), topology, {topology.dead_exchange: dead}, mend=cast(Any, None))
    await reporter.dead_letter(cast(AbstractIncomingMessage, original), "gone", attempts.headers())
    assert published[0].user_id == "fleet"  # stamped with the user of the channel's connection
    set_by_reporter = set(published[0].headers) - set(attempts.headers())
    assert set(DEAD_LETTER_HEADERS) == set_by_reporter | dvsa
    dead_letter = document()["components"]["messages"]["deadLetter"]
    assert set(dead_letter["headers"]["properties"]) == set(RETRY_HEADERS) | set(DEAD_LETTER_HEADERS)


def test_recalls_schemas_writes_and_checks_the_document(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(schemas, ["--check"]).exit_code == 0

    target = tmp_path / "asyncapi.json"
    options = ["--directory", str(SCHEMA_DIR), "--asyncapi", str(target)]
    stale = runner.invoke(schemas, ["--check", *options])
    assert stale.exit_code == 3
    assert stale.stderr.startswith("error: schemas out of date") and "asyncapi.json" in stale.stderr
    wrote = runner.invoke(schemas, options)
    assert wrote.exit_code == 0 and wrote.stdout.strip() == "wrote asyncapi.json"
    assert target.read_text(encoding="utf-8") == render_asyncapi()
    assert runner.invoke(schemas, ["--check", *options]).exit_code == 0


def test_a_real_prefix_renders_real_names() -> None:
    doc = asyncapi_document(Topology("acme", retry_tiers=(2,)))
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert {"acme.commands", "acme.create.bulk", "acme.retry.2s", "acme.dead", "acme.ledger"} <= addresses
    assert not any(PREFIX in address for address in addresses)
