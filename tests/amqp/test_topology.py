"""Names, bindings and headers of the RabbitMQ listener, without a broker."""

from __future__ import annotations

from tiny_listener.amqp import AMQPListener, binding_key
from tiny_listener.amqp._headers import attempt, dead_letter_headers, event_path, retry_headers
from tiny_listener.amqp._topology import binding_keys, retry_delays_ms, retry_queue_arguments, retry_queue_name


def make_app() -> AMQPListener:  # type: ignore[type-arg]
    app: AMQPListener = AMQPListener(queue="orders")  # type: ignore[type-arg]

    @app.on_event("order.{id:int}.created")
    async def created() -> None: ...

    @app.on_event("order.{id:int}.paid")
    async def paid() -> None: ...

    @app.on_event("order.{id}.created.again")
    async def again() -> None: ...

    @app.on_event("legacy:{id}", binding_key="legacy.#")
    async def legacy() -> None: ...

    @app.on_event()
    async def fallback() -> None: ...

    return app


def test_binding_keys_follow_the_routes() -> None:
    app = make_app()
    assert binding_key(app.routes["created"]) == "order.*.created"
    assert binding_keys(app.routes) == ["order.*.created", "order.*.paid", "order.*.created.again", "legacy.#", "#"]


def test_retry_queues_one_per_delay() -> None:
    assert retry_delays_ms(4, 0.5, 3.0) == [500, 1000, 2000, 3000]
    assert retry_queue_name("orders", 500) == "orders.retry.500ms"
    assert retry_queue_arguments("orders", 500) == {
        "x-message-ttl": 500, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders",
    }


def test_default_dead_letter_queue_and_disabling_it() -> None:
    assert AMQPListener(queue="q").dead_letter_queue == "q.dead"
    assert AMQPListener(queue="q", dead_letter="elsewhere").dead_letter_queue == "elsewhere"
    assert AMQPListener(queue="q", dead_letter=False).dead_letter_queue is None


def test_event_path_from_header_else_routing_key() -> None:
    assert event_path({"x-event-path": "a:b"}, "rk") == "a:b"
    assert event_path({"x-event-path": b"a:b"}, "rk") == "a:b"
    assert event_path({}, "order.1.created") == "order.1.created"
    assert event_path(None, None) == ""


def test_attempt_defaults_to_one_and_ignores_bad_values() -> None:
    assert attempt(None) == 1
    assert attempt({"x-attempt": 3}) == 3
    assert attempt({"x-attempt": "3"}) == 1
    assert attempt({"x-attempt": True}) == 1


def test_retry_then_dead_letter_headers_keep_the_origin() -> None:
    first = retry_headers({"trace": "t"}, "order.1.created", 2, ValueError("x"), "shop", "order.1.created")
    assert first["x-attempt"] == 2 and first["x-original-exchange"] == "shop"
    # The retried copy comes back through the default exchange, under the queue's name.
    dead = dead_letter_headers(first, "order.1.created", "handler-failed", ValueError("y" * 5000), "", "orders")
    assert dead["x-original-exchange"] == "shop"
    assert dead["x-original-routing-key"] == "order.1.created"
    assert dead["trace"] == "t"
    assert len(dead["x-last-error"]) == 1000
