"""Route paths turned into broker wildcard patterns."""

from __future__ import annotations

import pytest

from tiny_listener import Listener
from tiny_listener.amqp._topology import binding_keys
from tiny_listener.nats._subjects import route_subjects
from tiny_listener.routing import RouteTable
from tiny_listener.wildcards import message_routes, route_pattern, unique_patterns


@pytest.mark.parametrize(
    ("path", "amqp", "nats"),
    [
        ("order.{id:int}.created", "order.*.created", "order.*.created"),
        ("orders.{id}", "orders.*", "orders.*"),
        ("{x:path}", "#", ">"),
        ("audit.{rest:path}", "audit.#", "audit.>"),
        ("a.{x:path}.end", "a.#.end", "a.>"),
        ("static.key", "static.key", "static.key"),
        ("v{major:int}.events", "*.events", "*.events"),
    ],
)
def test_route_patterns(path: str, amqp: str, nats: str) -> None:
    assert route_pattern(path, separator=".", single="*", multi="#", multi_ends_pattern=False) == amqp
    assert route_pattern(path, separator=".", single="*", multi=">", multi_ends_pattern=True) == nats


def test_mqtt_style_topics() -> None:
    pattern = route_pattern("/iot/home/{room}/temperature", separator="/", single="+", multi="#",
                            multi_ends_pattern=True)
    assert pattern == "/iot/home/+/temperature"


def test_unique_patterns_keep_first_seen_order() -> None:
    assert unique_patterns(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_brokers_leave_http_routes_to_the_http_source() -> None:
    app: Listener = Listener()  # type: ignore[type-arg]

    @app.on_event("orders.{id}")
    async def order() -> None: ...

    @app.on_event("GET:/orders/{id}")
    async def show() -> None: ...

    @app.on_event("DELETE:/orders/{id}")
    async def delete() -> None: ...

    @app.on_event("AUDIT:trail")  # upper case, but no "/": not an HTTP route
    async def audit() -> None: ...

    routes: RouteTable = app.routes
    assert [route.name for route in message_routes(routes.values())] == ["order", "audit"]
    assert route_subjects(routes) == ["orders.*", "AUDIT:trail"]
    assert binding_keys(routes) == ["orders.*", "AUDIT:trail"]
