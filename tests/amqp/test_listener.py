"""AMQPListener against the RabbitMQ on 127.0.0.1:5672: events, acks, retries, dead letters,
prefetch and graceful shutdown."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import pytest

from tests.broker_listeners import peak_in_flight, running, stop_with_two_in_flight
from tiny_listener import Data, Event, Param
from tiny_listener.amqp import ATTEMPT, DEAD_LETTER_REASON, EVENT_PATH, LAST_ERROR, NotConnected

from .conftest import Names, aio_pika, get_all, message_count


async def test_message_becomes_event_and_is_acknowledged(names: Names, channel: Any) -> None:
    app = names.app()
    seen: List[Dict[str, Any]] = []
    done = asyncio.Event()

    @app.on_event("order:{id:int}:paid")
    async def paid(event: Event, id: Param, amount: Data) -> None:
        seen.append({"id": id, "amount": amount, "attempt": event.ctx.scope["attempt"]})
        done.set()

    async with running(app):
        await app.publish("order:7:paid", {"amount": 12.5})
        await asyncio.wait_for(done.wait(), 10)
    assert seen == [{"id": 7, "amount": 12.5, "attempt": 1}]
    assert await message_count(channel, app.queue) == 0  # acknowledged, not requeued at close


async def test_publish_before_connecting_raises() -> None:
    app = Names().app()
    with pytest.raises(NotConnected):
        await app.publish("x", {})


async def test_topic_exchange_bound_from_routes(names: Names, channel: Any) -> None:
    exchange_name = names.exchange()
    app = names.app(exchange=exchange_name)
    got: List[Any] = []
    all_seen = asyncio.Event()

    @app.on_event("order.{id:int}.created")
    async def created(id: Param) -> None:
        got.append(("created", id))
        if len(got) == 2:
            all_seen.set()

    @app.on_event("audit.{rest:path}")
    async def audit(rest: Param) -> None:
        got.append(("audit", rest))
        if len(got) == 2:
            all_seen.set()

    async with running(app):
        exchange = await channel.get_exchange(exchange_name)
        # Published by a plain client: the routing key is the event path.
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="order.42.created")
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="shipping.1.created")  # bound by no route
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="audit.user.login")
        await asyncio.wait_for(all_seen.wait(), 10)
    assert sorted(got, key=str) == [("audit", "user.login"), ("created", 42)]
    assert await message_count(channel, app.queue) == 0
    assert await message_count(channel, f"{app.queue}.dead") == 0  # the unbound key never came


async def test_failed_handler_is_retried_with_attempt_count(names: Names) -> None:
    app = names.app(max_retries=3)
    attempts: List[int] = []
    succeeded = asyncio.Event()

    @app.on_event("flaky")
    async def flaky(event: Event) -> str:
        attempts.append(event.ctx.scope["attempt"])
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        succeeded.set()
        return "ok"

    async with running(app):
        await app.publish("flaky", {})
        await asyncio.wait_for(succeeded.wait(), 20)
    assert attempts == [1, 2, 3]


async def test_dead_lettered_with_error_after_max_retries(names: Names, channel: Any) -> None:
    app = names.app(max_retries=2)
    calls: List[int] = []

    @app.on_event("always:{n}")
    async def always(event: Event) -> None:
        calls.append(event.ctx.scope["attempt"])
        raise ValueError("broken handler")

    async with running(app):
        await app.publish("always:1", {"k": "v"}, headers={"trace": "abc"})
        [dead] = await asyncio.wait_for(get_all(channel, f"{app.queue}.dead", 1), 20)
    assert calls == [1, 2, 3]
    assert dead.headers[DEAD_LETTER_REASON] == "handler-failed"
    assert "broken handler" in dead.headers[LAST_ERROR]
    assert dead.headers[EVENT_PATH] == "always:1"
    assert dead.headers[ATTEMPT] == 3
    assert dead.headers["trace"] == "abc"
    assert dead.body == b'{"k":"v"}'
    assert await message_count(channel, app.queue) == 0


async def test_unknown_route_and_undecodable_payload_are_dead_lettered(names: Names, channel: Any) -> None:
    app = names.app()
    called: List[str] = []

    @app.on_event("known")
    async def known() -> None:
        called.append("known")

    async with running(app):
        await app.publish("nobody:handles:this", {"a": 1})
        raw = aio_pika.Message(b"{not json", headers={EVENT_PATH: "known"})
        await channel.default_exchange.publish(raw, routing_key=app.queue)
        dead = await asyncio.wait_for(get_all(channel, f"{app.queue}.dead", 2), 20)
    reasons = {message.headers[EVENT_PATH]: message.headers[DEAD_LETTER_REASON] for message in dead}
    assert reasons == {"nobody:handles:this": "no-route", "known": "undecodable"}
    assert called == []
    assert await message_count(channel, app.queue) == 0


async def test_without_dead_letter_queue_bad_messages_are_logged_and_acknowledged(
    names: Names, channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = names.app(dead_letter=False)
    handled = asyncio.Event()

    @app.on_event("known")
    async def known() -> None:
        handled.set()

    async with running(app):
        await app.publish("unknown", {})
        await app.publish("known", {})  # one queue, one consumer: handled after "unknown"
        await asyncio.wait_for(handled.wait(), 10)
    assert await message_count(channel, app.queue) == 0
    assert any("unknown" in r.getMessage() and r.name == "tiny_listener.amqp" for r in caplog.records)


async def test_prefetch_bounds_messages_in_flight(names: Names) -> None:
    app = names.app(max_in_flight=3)
    assert await peak_in_flight(app, "job:{n:int}", "job:{}".format, hold_until=3) == 3


async def test_shutdown_finishes_in_flight_and_leaves_the_rest(names: Names, channel: Any) -> None:
    app = names.app(max_in_flight=2)
    started, handled = await stop_with_two_in_flight(app, "job:{n:int}", "job:{}".format)
    assert sorted(handled) == sorted(started) and len(handled) == 2
    assert await message_count(channel, app.queue) == 3

    # A new listener on the same queue gets exactly the three that were not handled.
    second = names.app(queue=app.queue)
    rest: List[int] = []
    three = asyncio.Event()

    @second.on_event("job:{n:int}")
    async def job_again(n: Param) -> None:
        rest.append(n)
        if len(rest) == 3:
            three.set()

    async with running(second):
        await asyncio.wait_for(three.wait(), 10)
    assert sorted(handled + rest) == [0, 1, 2, 3, 4]


async def test_unfinished_message_is_requeued_after_shutdown_timeout(names: Names, channel: Any) -> None:
    app = names.app(shutdown_timeout=0.2)
    started = asyncio.Event()

    @app.on_event("stuck")
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes: cancelled at the shutdown deadline

    async with running(app):
        await app.publish("stuck", {})
        await asyncio.wait_for(started.wait(), 10)

    # Left unacknowledged: RabbitMQ gives it to the next consumer, marked redelivered.
    second = names.app(queue=app.queue)
    again: List[bool] = []
    got_it = asyncio.Event()

    @second.on_event("stuck")
    async def stuck_again(event: Event) -> None:
        again.append(event.ctx.scope["message"].redelivered)
        got_it.set()

    async with running(second):
        await asyncio.wait_for(got_it.wait(), 10)
    assert again == [True]
    assert await message_count(channel, app.queue) == 0


async def test_publishing_to_a_missing_exchange_fails_and_publishing_goes_on(names: Names) -> None:
    app = names.app()
    done = asyncio.Event()

    @app.on_event("after")
    async def after() -> None:
        done.set()

    async with running(app):
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await app.publish("lost", {}, exchange=f"{names.prefix}.no-such-exchange")
        await app.publish("after", {})
        await asyncio.wait_for(done.wait(), 10)
