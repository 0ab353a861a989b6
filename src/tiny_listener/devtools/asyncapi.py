"""The AsyncAPI 3.0 document of an app, for ``tiny-listener asyncapi MODULE:ATTR``.

- **servers**: the listener's own (HTTP and TCP host and port, the broker's URL without its
  credentials), with the protocol ``http``, ``tcp``, ``redis``, ``mqtt``/``secure-mqtt``,
  ``amqp``/``amqps`` or ``nats``; none for a listener of another kind.
- **channels**: one per route, named after its handler, at the route's path (HTTP routes
  without their ``METHOD:`` prefix, which becomes the operation's ``http`` binding), with a
  parameter per path parameter whose description names its convertor.
- **operations**: a ``receive`` operation per channel: the app receives its messages. A route
  with ``publish_to`` adds a channel ``<handler>.result`` at its destination (with the
  parameters it uses) and a ``send`` operation: the app publishes the handler's result there.
  On NATS and RabbitMQ, whose handlers answer requests, the ``receive`` operation has a
  ``reply`` on a channel ``<handler>.reply`` whose address the request names (NATS: its
  ``x-reply-to`` header, given as the reply's address; RabbitMQ: its ``reply_to`` property).
- **messages** of results: the JSON Schema of the handler's return annotation when it is a
  type the checker knows (a model, ``Struct``, dataclass, ``TypedDict``...), none otherwise.
- **messages** in ``components``: per route, the JSON Schema of the data its handler declares
  (see :mod:`tiny_listener.devtools.contract`); models, Structs, dataclasses and ``TypedDict``
  in ``components.schemas``.
"""

from __future__ import annotations

import json
import sys
import typing
from typing import Any, Dict, Tuple
from urllib.parse import urlsplit

from ..listener import Listener
from ..optional import require
from ..validation import SchemaRegistry, validator_for
from .contract import RouteContract, route_contracts

ASYNCAPI_VERSION = "3.0.0"
HTTP_METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE")

Document = Dict[str, Any]
"""An AsyncAPI or OpenAPI document, as a dict ready for ``json.dumps``."""


def asyncapi_document(
    listener: Listener[Any], *, title: str | None = None, version: str = "1.0.0", description: str | None = None
) -> Document:
    """Return the AsyncAPI 3.0 document of ``listener``'s routes (see the module docstring).

    ``title`` defaults to the listener's class name; ``version`` is the app's version.
    """
    registry = SchemaRegistry("#/components/schemas/{name}")
    info: Document = {"title": title or type(listener).__name__, "version": version}
    if description:
        info["description"] = description
    document: Document = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    servers = servers_of(listener)
    if servers:
        document["servers"] = servers
    document["defaultContentType"] = content_type_of(listener)
    is_http = any(source.kind == "http" for source in listener.sources)
    channels: Document = {}
    operations: Document = {}
    messages: Document = {}
    replies = reply_location(listener)
    for contract in route_contracts(listener, registry):
        channel, operation, message = _route_parts(contract, is_http)
        channels[contract.name] = channel
        operations[contract.name] = operation
        messages[contract.name] = message
        destination = contract.route.publish_to
        if destination is None and (replies is None or "bindings" in operation):
            continue
        result_name = f"{contract.name}.result"
        messages[result_name] = _result_message(contract, registry)
        # HTTP routes (an operation with an http binding) answer over HTTP, not with replies.
        if replies is not None and "bindings" not in operation:
            reply_name = f"{contract.name}.reply"
            channels[reply_name] = {
                "address": None,  # the request names it
                "messages": {result_name: {"$ref": f"#/components/messages/{result_name}"}},
            }
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{reply_name}"},
                "messages": [{"$ref": f"#/channels/{reply_name}/messages/{result_name}"}],
            }
            if "location" in replies:
                operation["reply"]["address"] = replies
        if destination is not None:
            result_channel: Document = {"address": destination.template}
            used = [parameter for parameter in contract.parameters if parameter.name in destination.fields]
            if used:
                result_channel["parameters"] = {
                    parameter.name: {"description": f"path parameter {parameter.name} of {contract.address}"}
                    for parameter in used
                }
            result_channel["messages"] = {result_name: {"$ref": f"#/components/messages/{result_name}"}}
            channels[result_name] = result_channel
            operations[result_name] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{result_name}"},
                "messages": [{"$ref": f"#/channels/{result_name}/messages/{result_name}"}],
                "summary": f"the result of {contract.name}, published once it succeeded",
            }
    document["channels"] = channels
    document["operations"] = operations
    components: Document = {"messages": messages}
    if registry.definitions:
        components["schemas"] = registry.definitions
    document["components"] = components
    return document


def reply_location(listener: Listener[Any]) -> Document | None:
    """Return the AsyncAPI reply address of requests to ``listener``'s broker (NATS; ``{}``
    for RabbitMQ, whose reply address is no header), or None if it hosts no broker source
    whose handlers answer requests."""
    for source in listener.sources:
        if source.kind == "nats":
            return {
                "description": "the inbox the request names in its x-reply-to header",
                "location": "$message.header#/x-reply-to",
            }
        if source.kind == "amqp":
            # The reply_to property is no header: AsyncAPI has no runtime expression for it.
            return {}
    return None


def _result_message(contract: RouteContract, registry: SchemaRegistry) -> Document:
    message: Document = {"name": f"{contract.name}.result"}
    payload = result_schema(contract.route.fn, registry)
    if payload is not None:
        message["payload"] = payload
    return message


def result_schema(fn: Any, registry: SchemaRegistry) -> Document | None:
    """Return the JSON Schema of what ``fn`` returns, from its return annotation, or None if
    it has none or none the checker knows."""
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve says nothing about the result
        return None
    if returned is None or returned is type(None) or returned is Any:
        return None
    try:
        return validator_for(returned).schema(registry)
    except (TypeError, ValueError):
        return None


def _route_parts(contract: RouteContract, is_http: bool) -> Tuple[Document, Document, Document]:
    name = contract.name
    address = contract.address
    method = None
    if is_http:
        prefix, sep, rest = address.partition(":")
        if sep and prefix.isupper():
            method, address = prefix, rest
    channel: Document = {"address": address}
    if contract.parameters:
        channel["parameters"] = {
            parameter.name: {"description": f"path parameter, convertor `{parameter.convertor}` ({parameter.regex})"}
            for parameter in contract.parameters
        }
    channel["messages"] = {name: {"$ref": f"#/components/messages/{name}"}}
    message: Document = {"name": name}
    if contract.summary:
        message["summary"] = contract.summary
    if contract.payload is not None:
        message["payload"] = contract.payload
    operation: Document = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
    }
    if contract.summary:
        operation["summary"] = contract.summary
    if contract.description:
        operation["description"] = contract.description
    if method in HTTP_METHODS:
        operation["bindings"] = {"http": {"method": method, "bindingVersion": "0.3.0"}}
    return channel, operation, message


def _is_instance(listener: Listener[Any], module: str, name: str) -> bool:
    """True if ``listener`` is an instance of ``module.name``, importing nothing: a listener of
    that class exists only once its module is imported."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(listener, cls)


def _host_of(url: str) -> Tuple[str, str, str]:
    """Return (scheme, host[:port], path) of ``url``, without user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts.scheme, host, parts.path


def servers_of(listener: Listener[Any]) -> Document:
    """Return the AsyncAPI Server Objects of what ``listener`` serves or reads from, by name:
    one per source it hosts (an HTTP port, a TCP port, a broker), else the listener's own."""
    servers: Document = {}
    for source in listener.sources:
        server = source_server(source)
        if server is not None:
            servers[source.name] = server
    if not listener.sources:
        named = server_of(listener)
        if named is not None:
            servers[named[0]] = named[1]
    return servers


def source_server(source: Any) -> Document | None:
    """Return the AsyncAPI Server Object of a source: its address and protocol (by its
    ``kind``), or None for a source that has no address."""
    if source.kind == "http":
        return {"host": f"{source.host}:{source.port}", "protocol": "http"}
    if source.kind == "tcp":
        return {"host": f"{source.host}:{source.port}", "protocol": "tcp", "description": f"{source.framing} frames"}
    if getattr(source, "url", None):
        return _broker_server(source, source.kind)
    return None


def server_of(listener: Listener[Any]) -> Tuple[str, Document] | None:
    """Return the (name, AsyncAPI Server Object) of the broker a listener that hosts no source
    reads from, or None for a listener of another kind."""
    brokers = (
        ("tiny_listener.redis.listener", "RedisStreamListener", "redis"),
        ("tiny_listener.mqtt.listener", "MQTTListener", "mqtt"),
        ("tiny_listener.amqp.listener", "AMQPListener", "amqp"),
        ("tiny_listener.nats.listener", "NATSListener", "nats"),
    )
    for module, class_name, name in brokers:
        if _is_instance(listener, module, class_name):
            return name, _broker_server(listener, name)
    return None


def _broker_server(listener: Any, name: str) -> Document:
    config = getattr(listener, "config", None)
    url = str(getattr(listener, "url", None) or getattr(config, "url", ""))
    scheme, host, path = _host_of(url.split(",")[0])
    protocol = {"mqtts": "secure-mqtt", "rediss": "redis", "tls": "nats"}.get(scheme, scheme or name)
    server: Document = {"host": host, "protocol": protocol}
    if path and path != "/":
        server["pathname"] = path
    if name == "redis":
        settings = config if config is not None else listener  # a RedisStreamSource keeps them itself
        streams = ", ".join(getattr(settings, "streams", ()))
        server["description"] = f"Redis Streams {streams}, consumer group {getattr(settings, 'group', '?')}"
    elif name == "amqp":
        exchange = getattr(listener, "exchange", None)
        queue = getattr(listener, "queue", "?")
        server["description"] = f"queue {queue}" + (f", exchange {exchange}" if exchange else "")
    elif name == "nats":
        stream = getattr(listener, "stream", "?")
        server["description"] = f"JetStream stream {stream}, durable consumer {getattr(listener, 'durable', '?')}"
    return server


def content_type_of(listener: Listener[Any]) -> str:
    """Return the content type of ``listener``'s messages: its codec's, JSON for HTTP bodies,
    raw bytes for a TCP listener without a codec."""
    codec = getattr(listener, "codec", None)
    if codec is None:
        config = getattr(listener, "config", None)
        codec = getattr(config, "codec", None)
    content_type = getattr(codec, "content_type", None)
    if isinstance(content_type, str):
        return content_type
    if _is_instance(listener, "tiny_listener.tcp.listener", "TCPListener"):
        return "application/octet-stream"
    return "application/json"


def render(document: Document, *, as_yaml: bool = False) -> str:
    """Return ``document`` as indented JSON or, with ``as_yaml``, as YAML (needs PyYAML: the
    ``yaml`` extra; raises :class:`~tiny_listener.optional.MissingExtraError` without it)."""
    if as_yaml:
        yaml = require("yaml", "yaml")
        text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return text.rstrip("\n")
    return json.dumps(document, indent=2, ensure_ascii=False)
