"""Routes -> subscriptions, records -> event paths, dead-letter topics and headers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tiny_listener import Listener
from tiny_listener.kafka._topics import (
    SubscriptionError,
    check_topic,
    dead_letter_headers,
    dead_letter_topic,
    encode_headers,
    encode_key,
    record_path,
    subscription,
)


def routes(*paths: str, **opts: Any) -> Any:
    app: Listener[Any] = Listener()
    for n, path in enumerate(paths):
        async def handler() -> None: ...

        handler.__name__ = f"handler{n}"
        app.on_event(path, **opts)(handler)
    return app.routes.values()


def test_literal_routes_subscribe_to_their_topics() -> None:
    found = subscription(routes("orders", "payments"))
    assert found.topics == ("orders", "payments")
    assert found.pattern is None
    assert found.describe() == "topic 'orders', 'payments'"


def test_http_routes_are_left_to_the_http_source() -> None:
    found = subscription(routes("orders", "GET:/orders/{id}", "POST:/orders"))
    assert found.topics == ("orders",)


def test_a_route_with_parameters_makes_a_pattern_subscription() -> None:
    found = subscription(routes("orders", "metrics.{host}.{n:int}"), dead_letter="{topic}.dead")
    assert found.pattern is not None
    pattern = re.compile(found.pattern)
    assert pattern.match("orders")
    assert pattern.match("metrics.web1.42")
    assert not pattern.match("metrics.web1.x")  # {n:int}
    assert not pattern.match("orders2")
    assert not pattern.match("metrics.web1.42.dead")  # dead-letter topics stay out
    assert not pattern.match("orders.dead")


def test_a_named_dead_letter_topic_stays_out_of_the_pattern() -> None:
    found = subscription(routes("jobs.{kind}"), dead_letter="jobs.failed")
    assert found.pattern is not None
    pattern = re.compile(found.pattern)
    assert pattern.match("jobs.build")
    assert not pattern.match("jobs.failed")
    assert pattern.match("jobs.build.dead")  # not a dead-letter topic of this source


def test_a_route_can_name_its_topic() -> None:
    assert subscription(routes("order:{id}:created", "order:{id}:paid", topic="orders")).topics == ("orders",)


@pytest.mark.parametrize("path", ["users:created", "order created", "a/{b}"])
def test_a_route_that_cannot_be_a_subscription_is_a_clear_error(path: str) -> None:
    with pytest.raises(SubscriptionError, match=rf"route {re.escape(repr(path))} .* cannot be a Kafka subscription"):
        subscription(routes(path))


def test_a_bad_topic_option_is_an_error() -> None:
    with pytest.raises(SubscriptionError, match="topic option"):
        subscription(routes("x", topic="not/a/topic"))


def test_explicit_topics_win_over_routes() -> None:
    assert subscription(routes("GET:/users"), topics=["a", "b", "a"]).topics == ("a", "b")
    with pytest.raises(ValueError, match="not a Kafka topic name"):
        subscription([], topics=["a b"])
    with pytest.raises(SubscriptionError, match="names no topic"):
        subscription([], topics=[])


def test_no_routes_no_topics_is_an_error() -> None:
    with pytest.raises(SubscriptionError, match="no routes"):
        subscription([])


def test_topic_names() -> None:
    assert check_topic("a.b_c-1") == "a.b_c-1"
    for bad in ("", ".", "..", "x" * 250, "a:b"):
        with pytest.raises(ValueError):
            check_topic(bad)


def test_event_paths_from_topic_header_or_both() -> None:
    headers = [("x-event-path", b"order:7:created"), ("other", b"1")]
    assert record_path("orders", headers, "topic") == "orders"
    assert record_path("orders", headers, "header") == "order:7:created"
    assert record_path("orders", headers, "header-or-topic") == "order:7:created"
    assert record_path("orders", [], "header-or-topic") == "orders"
    assert record_path("orders", [("other", b"1")], "header-or-topic") == "orders"
    assert record_path("orders", [], "header") == ""  # no route matches: dead-lettered as no-route
    assert record_path("orders", [("x-event-path", b"\xff")], "header") == ""


def test_dead_letter_topic_and_headers() -> None:
    assert dead_letter_topic("{topic}.dead", "orders") == "orders.dead"
    assert dead_letter_topic("all-failures", "orders") == "all-failures"
    headers = dead_letter_headers(
        [("trace", b"t1"), ("x-dead-letter-reason", b"old")],
        path="orders", reason="handler-failed", error=ValueError("boom"), attempts=4,
        topic="orders", partition=3, offset=1234, key=b"k1",
    )
    assert dict(headers) == {
        "trace": b"t1",
        "x-event-path": b"orders",
        "x-dead-letter-reason": b"handler-failed",
        "x-last-error": b"ValueError('boom')",
        "x-attempt": b"4",
        "x-original-topic": b"orders",
        "x-original-partition": b"3",
        "x-original-offset": b"1234",
        "x-original-key": b"k1",
    }
    assert len(headers) == len(dict(headers))  # the old reason is replaced, not repeated
    no_key = dead_letter_headers([], path="p", reason="undecodable", error=ValueError(), attempts=1,
                                 topic="t", partition=0, offset=0, key=None)
    assert "x-original-key" not in dict(no_key)


def test_encoding_keys_and_headers() -> None:
    assert encode_key("k") == b"k"
    assert encode_key(b"k") == b"k"
    assert encode_key(None) is None
    assert encode_headers({"a": "é", "b": b"\x00"}) == [("a", "é".encode()), ("b", b"\x00")]
    assert encode_headers(None) == []
