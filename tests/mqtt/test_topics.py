"""Topic filters derived from routes, without a broker."""

from __future__ import annotations

from typing import Any

import pytest

from tiny_listener.mqtt import TopicFilterError, covers, route_filter, subscriptions
from tiny_listener.routing import Route


def route(path: str, **opts: Any) -> Route:
    async def handler() -> None: ...

    return Route(path, handler, opts)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/iot/home/{room}/temperature", "/iot/home/+/temperature"),
        ("{x:path}", "#"),
        ("/iot/{rest:path}", "/iot/#"),
        ("sensors/{id:int}/{kind:str}", "sensors/+/+"),
        ("plain/topic", "plain/topic"),
    ],
)
def test_filters_from_paths(path: str, expected: str) -> None:
    assert route_filter(route(path)) == expected


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("sensor-{id}/x", "mixes a parameter with text"),
        ("order:{id:int}:created", "mixes a parameter with text"),
        ("/a/{x:path}/b", "must be the last level"),
        ("a/+/b", "wildcard character"),
        ("a/#", "wildcard character"),
        ("", "empty"),
    ],
)
def test_paths_without_a_filter_are_refused_naming_the_route(path: str, reason: str) -> None:
    with pytest.raises(TopicFilterError, match=reason) as caught:
        route_filter(route(path))
    assert repr(path) in str(caught.value) and "topic=" in str(caught.value)


def test_an_explicit_topic_option_wins_and_is_checked() -> None:
    assert route_filter(route("order:{id:int}", topic="order/+")) == "order/+"
    with pytest.raises(TopicFilterError, match="not a valid topic filter"):
        route_filter(route("x", topic="a/#/b"))


def test_covers() -> None:
    assert covers("#", "a/b") and covers("a/#", "a") and covers("a/+", "a/b") and covers("+/+", "a/+")
    assert not covers("a/+", "a/#") and not covers("a/+", "a/b/c") and not covers("a/b", "a/+")
    assert not covers("#", "$SYS/broker") and covers("$SYS/#", "$SYS/broker")


def test_subscriptions_drop_covered_filters_and_keep_the_highest_qos() -> None:
    routes = [route("/a/{b}/c"), route("/a/{x:path}", qos=2), route("/z/{q}"), route("/a/x/c", qos=0)]
    assert subscriptions(routes, 1) == [("/a/#", 2), ("/z/+", 1)]
    assert subscriptions([route("/a/{b}"), route("{_:path}", qos=0)], 1) == [("#", 1)]
    with pytest.raises(ValueError, match="qos must be"):
        subscriptions([route("a", qos=3)], 1)
