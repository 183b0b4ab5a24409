"""The AsyncAPI 3.0.0 document of the fleet's queues, exchanges and messages, generated from the code.

Channels are what :func:`recalls.shared.topology.declare` declares, recorded by running it against a fake
channel for the prefix placeholder ``{prefix}`` (a channel parameter whose default is the settings'
default prefix), so exchange types, queue arguments and bindings cannot drift from the real topology.
Payload schemas are :func:`recalls.shared.schema_export.schema_of` of the contract's Structs, embedded under
``components.schemas``.  The document is committed as ``shared/asyncapi.json`` (pretty, key-sorted JSON)
and a test checks that it equals :func:`render_asyncapi`; ``recalls schemas`` rewrites it.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aio_pika.abc import AbstractChannel

from recalls.shared.contracts import COMMAND_TYPES, SCHEMA_VERSION, VERBS, Command, OutcomeEvent
from recalls.shared.schema_export import schema_of
from recalls.shared.settings import Settings
from recalls.shared.telemetry import WorkerStats, declare_stats
from recalls.shared.topology import EVENT_KEYS, FAILED_EVENT_KEY, LANES, Topology, declare

ASYNCAPI_PATH = Path(__file__).parent / "asyncapi.json"
PREFIX = "{prefix}"
_AMQP = "0.3.0"  # version of the AMQP 0-9-1 bindings
_COMMANDS = "Command"
_STATS = "workerStats"

# Headers the workers set (workers/attempts.py, workers/reporting.py, workers/handler.py); a test checks
# these names against the workers, which shared may not import.
RETRY_HEADERS: dict[str, dict[str, Any]] = {
    "x-attempts": {"type": "integer", "description": "DVSA attempts so far."},
    "x-waits": {
        "type": "integer",
        "description": "Of those, attempts that waited (for the create, for a token) and do not count "
        "towards giving up.",
    },
    "x-first-seen": {"type": "number", "description": "Unix time the fleet first took the command."},
    "x-maybe-applied": {"type": "boolean", "description": "An earlier attempt may have reached DVSA."},
    "x-history": {
        "type": "array",
        "items": {"type": "string"},
        "description": "One line per attempt, newest last (at most 20).",
    },
    "x-last-error": {"type": "string", "description": "The newest line of x-history."},
}
DEAD_LETTER_HEADERS: dict[str, dict[str, Any]] = {
    "x-reason": {
        "type": "string",
        "description": "Why the command can never succeed; it starts with untrusted_sender (a sender not "
        "in RECALLS_PUBLISHER_USERS, or an outcome event from a sender not in RECALLS_FLEET_USERS) or "
        "issued_in_future (issued_at beyond RECALLS_MAX_CLOCK_SKEW) for those refusals.",
    },
    "x-routing-key": {"type": "string", "description": "The routing key it arrived with (verb and lane)."},
    "x-dead-at": {"type": "number", "description": "Unix time it was dead-lettered."},
    "x-dvsa-status": {"type": "integer", "description": "DVSA's last HTTP status, if DVSA answered."},
    "x-dvsa-error-code": {"type": "string", "description": "DVSA's last error code."},
    "x-dvsa-error-message": {"type": "string", "description": "DVSA's last error message."},
}


@dataclass
class Declared:
    """What :func:`recalls.shared.topology.declare` asked the broker for."""

    exchanges: dict[str, str] = field(default_factory=dict)  # name -> type
    durable: dict[str, bool] = field(default_factory=dict)  # exchange or queue name -> durable
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> arguments
    bindings: list[tuple[str, str, str]] = field(default_factory=list)  # (queue, exchange, routing key)


class _Recorder:
    """Just enough of an aio-pika channel for :func:`declare`, keeping every call."""

    def __init__(self) -> None:
        self.declared = Declared()

    async def declare_exchange(self, name: str, type: Any, *, durable: bool) -> _Named:
        self.declared.exchanges[name] = str(getattr(type, "value", type))
        self.declared.durable[name] = durable
        return _Named(name, self.declared)

    async def declare_queue(self, name: str, *, durable: bool, arguments: dict[str, Any]) -> _Named:
        self.declared.queues[name] = dict(arguments)
        self.declared.durable[name] = durable
        return _Named(name, self.declared)


@dataclass
class _Named:
    name: str
    declared: Declared

    async def bind(self, exchange: str, routing_key: str | None = None) -> None:
        self.declared.bindings.append((self.name, exchange, routing_key or ""))


def declared(topology: Topology) -> Declared:
    """Run :func:`declare` and :func:`declare_stats` against a recorder.

    Neither waits on anything, so no event loop is needed.
    """
    recorder = _Recorder()
    channel = cast(AbstractChannel, recorder)
    coroutines: list[Coroutine[Any, Any, object]] = [
        declare(channel, topology),
        declare_stats(channel, topology),
    ]
    for coroutine in coroutines:
        try:
            coroutine.send(None)
        except StopIteration:
            continue
        coroutine.close()
        raise RuntimeError("a declaration awaited something the recorder does not provide")
    return recorder.declared


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)}


def _local_refs(node: Any) -> Any:
    """JSON Schema ``#/$defs/X`` references (and discriminator mappings) made ``#/components/schemas/X``."""
    if isinstance(node, dict):
        return {key: _local_refs(value) for key, value in node.items() if key not in ("$schema", "$defs")}
    if isinstance(node, list):
        return [_local_refs(item) for item in node]
    if isinstance(node, str) and node.startswith("#/$defs/"):
        return "#/components/schemas/" + node.removeprefix("#/$defs/")
    return node


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    documents = (
        ("Recalls command", Command),
        ("Recalls outcome event", OutcomeEvent),
        ("Recalls worker stats", WorkerStats),
    )
    for title, type_ in documents:
        document = schema_of(title, type_)
        schemas.update({name: _local_refs(schema) for name, schema in document["$defs"].items()})
        if type_ is Command:
            # An AsyncAPI Schema's discriminator is the property's name, not OpenAPI's mapping object.
            union = _local_refs(document)
            union["discriminator"] = union["discriminator"]["propertyName"]
            schemas[_COMMANDS] = union
    return schemas


def _headers(headers: dict[str, dict[str, Any]], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": headers}


def _messages() -> dict[str, Any]:
    correlation = {"location": "$message.payload#/correlation_id"}
    retry_headers = _headers(
        RETRY_HEADERS,
        "AMQP headers a worker sets when it sends the command to a retry tier; absent at first.",
    )
    command_properties = {
        "content_type": "application/json",
        "delivery_mode": "2 (persistent)",
        "message_id": "the body's message_id: the idempotency key (a re-send with it is applied once)",
        "correlation_id": "the body's correlation_id, if any",
        "timestamp": "the body's issued_at",
        "type": "the verb",
        "reply_to": "optional: a queue of the sender's own (amq.gen-... or amq.rabbitmq.reply-to) that "
        "also receives the outcome event; any other is ignored",
        "user_id": "the publishing broker user, which RabbitMQ checks (set it to your login: RabbitMQ "
        "fills nothing in); once RECALLS_PUBLISHER_USERS is set, workers take commands only from those "
        "users and the fleet's own, and they read retry headers only from the fleet's own",
    }
    messages: dict[str, Any] = {}
    for verb, type_ in COMMAND_TYPES.items():
        messages[verb] = {
            "name": verb,
            "title": f"{verb} command",
            "summary": (type_.__doc__ or "").strip(),
            "contentType": "application/json",
            "correlationId": correlation,
            "headers": retry_headers,
            "payload": _ref("components", "schemas", type_.__name__),
            "bindings": {"amqp": {"messageType": verb, "bindingVersion": _AMQP}},
            "x-amqp-properties": command_properties,
        }
    messages["deadLetter"] = {
        "name": "deadLetter",
        "title": "dead-lettered command",
        "summary": "A command that can never succeed (or a body that is not one, or an outcome event "
        "from an untrusted sender), with its reason.",
        "contentType": "application/json",
        "headers": _headers(
            {**RETRY_HEADERS, **DEAD_LETTER_HEADERS}, "The command's retry headers plus why it died."
        ),
        "payload": {
            "description": "The original body, byte for byte: a command, or an undecodable body as it came.",
            "anyOf": [_ref("components", "schemas", _COMMANDS), {}],
        },
        "x-amqp-properties": {**command_properties, "message_id": "the original message's message_id"},
    }
    messages[_STATS] = {
        "name": _STATS,
        "title": "a worker's live figures",
        "summary": (WorkerStats.__doc__ or "").strip(),
        "contentType": "application/json",
        "payload": _ref("components", "schemas", WorkerStats.__name__),
        "x-amqp-properties": {"delivery_mode": "1 (transient): figures a few seconds old are worth nothing"},
    }
    for key in _event_keys():
        messages[_key(key)] = {
            "name": key,
            "title": f"{key} event",
            "summary": "What became of one command"
            + (" that failed for good." if key == FAILED_EVENT_KEY else "."),
            "contentType": "application/json",
            "correlationId": correlation,
            "payload": _ref("components", "schemas", OutcomeEvent.__name__),
            "bindings": {"amqp": {"messageType": key, "bindingVersion": _AMQP}},
            "x-amqp-properties": {
                "content_type": "application/json",
                "delivery_mode": "2 (persistent)",
                "message_id": "the command's message_id",
                "correlation_id": "the command's correlation_id, if any",
                "type": "the routing key",
            },
        }
    return messages


def _event_keys() -> list[str]:
    return [*(EVENT_KEYS[verb] for verb in VERBS), FAILED_EVENT_KEY]


def _key(*parts: str) -> str:
    """A key of channels, operations or messages: letters, digits, - and _ only, as tools demand."""
    return "_".join(parts).replace(".", "_")


def _channel_id(kind: str, name: str, topology: Topology) -> str:
    return _key(kind, name.removeprefix(topology.prefix + "."))


def _parameters() -> dict[str, Any]:
    """The channel parameter that the ``{prefix}`` placeholder in a name stands for."""
    return {
        "prefix": {
            "description": "RECALLS_PREFIX: every exchange and queue name starts with it.",
            "default": Settings.model_fields["prefix"].default,
        }
    }


def _channel(
    kind: str, name: str, flavour: str, binding: dict[str, Any], messages: Iterable[str]
) -> dict[str, Any]:
    """The channel of the exchange or queue (``kind``) ``name`` of type ``flavour``, carrying ``messages``.

    ``binding`` holds what differs in its AMQP exchange or queue binding; the name and what every
    exchange and queue here shares (not auto-delete, vhost ``/``) are added.
    """
    return {
        "address": name,
        "title": f"{flavour} {kind} {name}",
        **({"parameters": _parameters()} if PREFIX in name else {}),
        "messages": {key: _ref("components", "messages", key) for key in messages},
        "bindings": {
            "amqp": {
                # The AMQP bindings name an exchange channel by what it routes on.
                "is": "routingKey" if kind == "exchange" else "queue",
                kind: {"name": name, "autoDelete": False, "vhost": "/", **binding},
                "bindingVersion": _AMQP,
            }
        },
    }


def _channels(topology: Topology, found: Declared) -> dict[str, Any]:
    commands: list[str] = [*COMMAND_TYPES]
    events = [_key(key) for key in _event_keys()]
    verbs = {topology.command_queue(verb, lane): verb for verb in VERBS for lane in LANES}
    retries = {topology.retry_name(tier) for tier in range(len(topology.retry_tiers))}

    def carried(name: str) -> list[str]:
        if name == topology.stats_exchange:
            return [_STATS]
        if name == topology.dead_exchange:
            return ["deadLetter"]
        if name in (topology.events_exchange, topology.ledger_queue):
            return events
        if name in retries or name == topology.commands_exchange:
            return commands
        return [verbs[name]]

    channels: dict[str, Any] = {}
    for name, type_ in found.exchanges.items():
        binding = {"type": type_, "durable": found.durable[name]}
        channels[_channel_id("exchange", name, topology)] = _channel(
            "exchange", name, type_, binding, carried(name)
        )
    for name, arguments in found.queues.items():
        binding = {"durable": found.durable[name], "exclusive": False}
        channels[_channel_id("queue", name, topology)] = {
            **_channel("queue", name, arguments.get("x-queue-type", "classic"), binding, carried(name)),
            "x-arguments": arguments,
            "x-bound-to": [
                {"exchange": exchange, "routingKey": key}
                for queue, exchange, key in found.bindings
                if queue == name
            ],
        }
    return channels


def _operation(
    action: str, channel: str, messages: Iterable[str], actor: str, summary: str, **amqp: Any
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": _ref("channels", channel),
        "messages": [_ref("channels", channel, "messages", key) for key in messages],
        "summary": summary,
        "tags": [{"name": actor}],
        "bindings": {"amqp": {**amqp, "bindingVersion": _AMQP}},
    }


def _operations(topology: Topology) -> dict[str, Any]:
    commands = _channel_id("exchange", topology.commands_exchange, topology)
    events = _channel_id("exchange", topology.events_exchange, topology)
    sent = {"deliveryMode": 2, "mandatory": True}
    operations: dict[str, Any] = {}
    for verb in VERBS:
        for lane in LANES:
            key = topology.routing_key(verb, lane)
            queue = _channel_id("queue", topology.command_queue(verb, lane), topology)
            operations[_key("publish", key)] = _operation(
                "send",
                commands,
                [verb],
                "publisher",
                f"Publish a {verb} command to the {lane} lane.",
                cc=[key],
                timestamp=True,
                **sent,
            )
            operations[_key("consume", key)] = _operation(
                "receive",
                queue,
                [verb],
                "fleet",
                f"A worker applies {verb} commands of the {lane} lane.",
                ack=True,
            )
    for tier, seconds in enumerate(topology.retry_tiers):
        retry = _channel_id("exchange", topology.retry_name(tier), topology)
        operations[retry.removeprefix("exchange_")] = _operation(
            "send",
            retry,
            COMMAND_TYPES,
            "fleet",
            f"Retry after {seconds:g} s: the command keeps its routing key and returns to its queue.",
            **sent,
        )
    operations["deadLetter"] = _operation(
        "send",
        _channel_id("exchange", topology.dead_exchange, topology),
        ["deadLetter"],
        "fleet",
        "A command that can never succeed goes to the dead-letter queue with its reason.",
        **sent,
    )
    for key in _event_keys():
        operations[_key("emit", key)] = _operation(
            "send",
            events,
            [_key(key)],
            "fleet",
            f"Report an outcome as {key} (also to the command's reply_to), stamped with the worker's "
            "user_id.",
            cc=[key],
            deliveryMode=2,
            mandatory=False,
        )
    stats = _channel_id("exchange", topology.stats_exchange, topology)
    operations["publish_stats"] = _operation(
        "send", stats, [_STATS], "fleet", "Every worker publishes its figures once a second.", deliveryMode=1
    )
    operations["watch_stats"] = _operation(
        "receive",
        stats,
        [_STATS],
        "dashboard",
        "The dashboard of `recalls api` reads them from an exclusive, auto-delete queue of its own.",
        ack=False,
    )
    operations["record_events"] = _operation(
        "receive",
        _channel_id("queue", topology.ledger_queue, topology),
        [_key(key) for key in _event_keys()],
        "fleet",
        "The event recorder keeps the ledger and batch jobs from every outcome a fleet user sent "
        "(RECALLS_FLEET_USERS); it dead-letters any other as untrusted_sender.",
        ack=True,
    )
    return operations


def asyncapi_document(topology: Topology | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``topology`` (by default: the placeholder prefix, default tiers)."""
    topology = topology or Topology(PREFIX)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "recalls fleet",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": "Recall commands published to RabbitMQ, applied to DVSA by the worker fleet, "
            "and their outcome events. Generated from the code by `recalls schemas`; do not edit by hand.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "RECALLS_AMQP_URL (this is its default).",
            }
        },
        "channels": _channels(topology, declared(topology)),
        "operations": _operations(topology),
        "components": {"schemas": _schemas(), "messages": _messages()},
    }


def render_asyncapi() -> str:
    """The committed file's exact text: pretty, key-sorted JSON ending in a newline."""
    return json.dumps(asyncapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_asyncapi(path: Path = ASYNCAPI_PATH) -> bool:
    return not path.is_file() or path.read_text(encoding="utf-8") != render_asyncapi()


def write_asyncapi(path: Path = ASYNCAPI_PATH) -> bool:
    """Write the document to ``path`` if it differs; return whether it did."""
    if not stale_asyncapi(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_asyncapi(), encoding="utf-8")
    return True
