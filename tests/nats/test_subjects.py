"""Subjects and dead-letter headers of the NATS listener, without a server."""

from __future__ import annotations

from tiny_listener.nats import NATSListener, route_subject
from tiny_listener.nats._subjects import dead_letter_headers, dead_letter_stream


def test_stream_subjects_follow_the_routes() -> None:
    app: NATSListener = NATSListener(stream="ORDERS", durable="w")  # type: ignore[type-arg]

    @app.on_event("orders.{id:int}")
    async def order() -> None: ...

    @app.on_event("orders.{name}")
    async def same_subject() -> None: ...

    @app.on_event("audit.{rest:path}.tail")
    async def audit() -> None: ...

    @app.on_event("legacy:{id}", subject="legacy.>")
    async def legacy() -> None: ...

    assert route_subject(app.routes["order"]) == "orders.*"
    assert app.stream_subjects() == ["orders.*", "audit.>", "legacy.>"]


def test_configured_subjects_win() -> None:
    app: NATSListener = NATSListener(stream="S", durable="w", subjects=["x.>"])  # type: ignore[type-arg]
    assert app.stream_subjects() == ["x.>"]


def test_dead_letter_names() -> None:
    assert NATSListener(stream="S", durable="w").dead_letter_subject == "deadletter.S"
    assert NATSListener(stream="S", durable="w", dead_letter=False).dead_letter_subject is None
    assert dead_letter_stream("ORDERS") == "ORDERS_dead"


def test_dead_letter_headers_are_single_line_strings() -> None:
    headers = dead_letter_headers({"trace": "t"}, "orders.1", "no-route", ValueError("a\nb"), 1, "S", 7)
    assert headers == {
        "trace": "t",
        "x-event-path": "orders.1",
        "x-dead-letter-reason": "no-route",
        "x-last-error": "ValueError('a\\nb')",
        "x-attempt": "1",
        "x-original-stream": "S",
        "x-original-sequence": "7",
    }
