"""What the broker listeners share through tiny_listener.delivery: settings checks, the
dead-letter target, starting a message's event, error texts for headers. The decisions of the
flow built on these are exercised through MemoryBroker in tests/sources/test_broker.py."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tiny_listener import Context, Event, EventNotFound, Listener
from tiny_listener.amqp import AMQPListener
from tiny_listener.codecs import DecodeError, JsonCodec
from tiny_listener.delivery import (
    MAX_ERROR_TEXT,
    NO_ROUTE,
    UNDECODABLE,
    Undeliverable,
    dead_letter_target,
    error_text,
    start_event,
)
from tiny_listener.mqtt import MQTTListener
from tiny_listener.nats import NATSListener
from tiny_listener.redis import RedisStreamListener
from tiny_listener.testing import MemoryBroker

BROKER_LISTENERS: list[Callable[..., Any]] = [
    lambda **options: AMQPListener(queue="orders", **options),
    lambda **options: NATSListener(stream="ORDERS", durable="workers", **options),
    lambda **options: MQTTListener(**options),
    lambda **options: MemoryBroker(**options),
    lambda **options: RedisStreamListener(streams=["orders"], **options),
]
IDS = ["amqp", "nats", "mqtt", "memory", "redis"]


class App(Listener[Context]):
    async def listen(self) -> None:
        await self.wait_for_shutdown()


@pytest.mark.parametrize("make", BROKER_LISTENERS, ids=IDS)
def test_every_broker_listener_checks_the_delivery_limits(make: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="max_in_flight must be at least 1, not 0"):
        make(max_in_flight=0)
    with pytest.raises(ValueError, match="max_retries must be 0 or more, not -1"):
        make(max_retries=-1)


@pytest.mark.parametrize("make", BROKER_LISTENERS, ids=IDS)
def test_the_delivery_settings_are_attributes_of_the_listener(make: Callable[..., Any]) -> None:
    listener: Any = make(max_in_flight=5, max_retries=0, retry_backoff=0.25, reconnect_backoff=0.5)
    assert (listener.max_in_flight, listener.max_retries) == (5, 0)
    assert (listener.retry_backoff, listener.reconnect_backoff) == (0.25, 0.5)
    assert (listener.max_retry_delay, listener.max_reconnect_delay) == (30.0, 10.0)


@pytest.mark.parametrize(
    ("setting", "value", "complaint"),
    [
        ("retry_backoff", -1, "retry_backoff must be 0 or more seconds, not -1"),
        ("max_retry_delay", -0.5, "max_retry_delay must be 0 or more seconds, not -0.5"),
        ("reconnect_backoff", 0, "reconnect_backoff must be a positive number of seconds, not 0"),
        ("max_reconnect_delay", 0, "max_reconnect_delay must be a positive number of seconds, not 0"),
    ],
)
def test_the_delays_of_the_flow_are_checked(setting: str, value: float, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        NATSListener(stream="ORDERS", durable="workers", **{setting: value})
    with pytest.raises(ValueError, match=complaint):
        MemoryBroker(**{setting: value})
    with pytest.raises(ValueError, match=complaint):
        RedisStreamListener(streams=["orders"], **{setting: value})


def test_dead_letter_target() -> None:
    assert dead_letter_target(True, "orders.dead") == "orders.dead"
    assert dead_letter_target("failed", "orders.dead") == "failed"
    assert dead_letter_target(False, "orders.dead") is None
    assert dead_letter_target("", "orders.dead") is None
    assert dead_letter_target(None, "orders.dead") is None


async def test_start_event_runs_the_handler_in_a_context_holding_the_scope() -> None:
    app = App()

    @app.on_event("order.{id:int}")
    async def order(event: Event) -> Any:
        return event.params["id"], event.data, event.ctx.scope["attempt"]

    task = start_event(app, "order.7", b'{"qty": 2}', JsonCodec(), {"attempt": 3})
    assert not isinstance(task, Undeliverable)
    assert await task == (7, {"qty": 2}, 3)


async def test_start_event_says_why_a_message_cannot_become_an_event() -> None:
    app = App()

    @app.on_event("order.{id:int}")
    async def order() -> None: ...

    undecodable = start_event(app, "order.7", b"{nope", JsonCodec(), {})
    assert isinstance(undecodable, Undeliverable) and undecodable.reason == UNDECODABLE
    assert isinstance(undecodable.error, DecodeError)

    no_route = start_event(app, "invoice.7", b"{}", JsonCodec(), {})
    assert isinstance(no_route, Undeliverable) and no_route.reason == NO_ROUTE
    assert isinstance(no_route.error, EventNotFound)
    assert not app.ctxs  # the context made for it was dropped


class MultilineError(Exception):
    def __repr__(self) -> str:
        return "MultilineError(\n  first\n  second)"


def test_error_text_is_bounded_and_optionally_on_one_line() -> None:
    assert error_text(MultilineError()) == "MultilineError(\n  first\n  second)"
    assert error_text(MultilineError(), one_line=True) == "MultilineError( first second)"
    long = error_text(ValueError("x" * 5000))
    assert len(long) == MAX_ERROR_TEXT and long.endswith("...")
