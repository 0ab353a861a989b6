"""Route paths turned into broker wildcard patterns."""

from __future__ import annotations

import pytest

from tiny_listener.wildcards import route_pattern, unique_patterns


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
