"""NATSListener against the nats-server on 127.0.0.1:4222: events, acks, naks with retries,
dead letters, the in-flight bound and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

import pytest

from tests.broker_listeners import peak_in_flight, running, stop_with_two_in_flight
from tiny_listener import Data, Event, Param
from tiny_listener.nats import ATTEMPT, DEAD_LETTER_REASON, EVENT_PATH, LAST_ERROR, NotConnected

from .conftest import Streams, pending


async def dead_letters(client: Any, app: Any, expected: int) -> List[Any]:
    """Wait for ``expected`` messages on the app's dead-letter subject, from its dead stream."""
    js = client.jetstream()
    subscription = await js.subscribe(app.dead_letter_subject, stream=f"{app.stream}_dead")
    try:
        return [await subscription.next_msg(timeout=20) for _ in range(expected)]
    finally:
        await subscription.unsubscribe()


async def test_message_becomes_event_and_is_acknowledged(streams: Streams, client: Any) -> None:
    app = streams.app()
    seen: List[Dict[str, Any]] = []
    done = asyncio.Event()

    @app.on_event(streams.prefix + ".orders.{id:int}")
    async def order(event: Event, id: Param, amount: Data) -> None:
        seen.append({"id": id, "amount": amount, "attempt": event.ctx.scope["attempt"]})
        done.set()

    async with running(app):
        assert app.stream_subjects() == [f"{streams.prefix}.orders.*"]
        await app.publish(f"{streams.prefix}.orders.7", {"amount": 12.5})
        await asyncio.wait_for(done.wait(), 10)
    assert seen == [{"id": 7, "amount": 12.5, "attempt": 1}]
    assert await pending(client, app.stream, app.durable) == 0


async def test_publish_before_connecting_raises() -> None:
    app = Streams().app()
    with pytest.raises(NotConnected):
        await app.publish("x", {})


async def test_subjects_from_several_routes(streams: Streams, client: Any) -> None:
    app = streams.app()
    got: List[Any] = []
    both = asyncio.Event()
    p = streams.prefix

    @app.on_event(p + ".orders.{id}.created")
    async def created(id: Param) -> None:
        got.append(("created", id))
        if len(got) == 2:
            both.set()

    @app.on_event(p + ".audit.{rest:path}")
    async def audit(rest: Param) -> None:
        got.append(("audit", rest))
        if len(got) == 2:
            both.set()

    async with running(app):
        assert app.stream_subjects() == [f"{p}.orders.*.created", f"{p}.audit.>"]
        js = client.jetstream()
        # Published by a plain client: the subject is the event path.
        await js.publish(f"{p}.orders.42.created", b"{}")
        await js.publish(f"{p}.audit.user.login", b"{}")
        await asyncio.wait_for(both.wait(), 10)
    assert sorted(got, key=str) == [("audit", "user.login"), ("created", "42")]


async def test_failed_handler_is_nakked_and_redelivered(streams: Streams) -> None:
    app = streams.app(max_retries=3)
    attempts: List[int] = []
    succeeded = asyncio.Event()

    @app.on_event(streams.prefix + ".flaky")
    async def flaky(event: Event) -> None:
        attempts.append(event.ctx.scope["attempt"])
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        succeeded.set()

    async with running(app):
        await app.publish(f"{streams.prefix}.flaky", {})
        await asyncio.wait_for(succeeded.wait(), 20)
    assert attempts == [1, 2, 3]


async def test_dead_lettered_with_error_after_max_retries(streams: Streams, client: Any) -> None:
    app = streams.app(max_retries=2)
    calls: List[int] = []

    @app.on_event(streams.prefix + ".always.{n}")
    async def always(event: Event) -> None:
        calls.append(event.ctx.scope["attempt"])
        raise ValueError("broken\nhandler")

    async with running(app):
        await app.publish(f"{streams.prefix}.always.1", {"k": "v"}, headers={"trace": "abc"})
        [dead] = await asyncio.wait_for(dead_letters(client, app, 1), 30)
    assert calls == [1, 2, 3]
    assert dead.headers[DEAD_LETTER_REASON] == "handler-failed"
    assert "broken" in dead.headers[LAST_ERROR] and "handler" in dead.headers[LAST_ERROR]
    assert dead.headers[EVENT_PATH] == f"{streams.prefix}.always.1"
    assert dead.headers[ATTEMPT] == "3"
    assert dead.headers["trace"] == "abc"
    assert json.loads(dead.data) == {"k": "v"}
    assert await pending(client, app.stream, app.durable) == 0


async def test_unknown_route_and_undecodable_payload_are_dead_lettered(streams: Streams, client: Any) -> None:
    p = streams.prefix
    app = streams.app(subjects=[f"{p}.>"])
    called: List[str] = []

    @app.on_event(p + ".known")
    async def known() -> None:
        called.append("known")

    async with running(app):
        js = client.jetstream()
        await js.publish(f"{p}.nobody.handles.this", b"{}")
        await js.publish(f"{p}.known", b"{not json")
        dead = await asyncio.wait_for(dead_letters(client, app, 2), 30)
    reasons = {message.headers[EVENT_PATH]: message.headers[DEAD_LETTER_REASON] for message in dead}
    assert reasons == {f"{p}.nobody.handles.this": "no-route", f"{p}.known": "undecodable"}
    assert called == []
    assert await pending(client, app.stream, app.durable) == 0


async def test_in_flight_messages_are_bounded(streams: Streams) -> None:
    app = streams.app(max_in_flight=3)
    route, path = streams.prefix + ".job.{n:int}", f"{streams.prefix}.job.{{}}".format
    assert await peak_in_flight(app, route, path, hold_until=3) == 3


async def test_shutdown_finishes_in_flight_and_leaves_the_rest(streams: Streams, client: Any) -> None:
    app = streams.app(max_in_flight=2)
    route, path = streams.prefix + ".job.{n:int}", f"{streams.prefix}.job.{{}}".format
    started, handled = await stop_with_two_in_flight(app, route, path)
    assert sorted(handled) == sorted(started) and len(handled) == 2

    # A new process of the same durable consumer gets the three that were not handled.
    second = streams.app(max_in_flight=2)
    rest: List[int] = []
    three = asyncio.Event()

    @second.on_event(streams.prefix + ".job.{n:int}")
    async def job_again(n: Param) -> None:
        rest.append(n)
        if len(set(rest)) == 3:
            three.set()

    async with running(second):
        await asyncio.wait_for(three.wait(), 20)
    assert sorted(handled + sorted(set(rest))) == [0, 1, 2, 3, 4]
    assert await pending(client, app.stream, app.durable) == 0


async def test_unfinished_message_is_handed_back_at_shutdown(streams: Streams, client: Any) -> None:
    app = streams.app(shutdown_timeout=0.2, ack_wait=60)
    started = asyncio.Event()

    @app.on_event(streams.prefix + ".stuck")
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes: cancelled at the shutdown deadline

    async with running(app):
        await app.publish(f"{streams.prefix}.stuck", {})
        await asyncio.wait_for(started.wait(), 10)

    # Nak'ed, not left to ack_wait (60 s): another consumer gets it at once.
    second = streams.app(ack_wait=60)
    again = asyncio.Event()

    @second.on_event(streams.prefix + ".stuck")
    async def stuck_again(event: Event) -> None:
        assert event.ctx.scope["attempt"] == 2
        again.set()

    async with running(second):
        await asyncio.wait_for(again.wait(), 10)
    assert await pending(client, app.stream, app.durable) == 0


async def test_slow_handler_keeps_its_message_past_ack_wait(streams: Streams, client: Any) -> None:
    app = streams.app(ack_wait=1)
    starts: List[int] = []
    finished = asyncio.Event()

    @app.on_event(streams.prefix + ".slow")
    async def slow(event: Event) -> None:
        starts.append(event.ctx.scope["attempt"])
        # Work for 2.5 ack_waits: without progress acks JetStream would redeliver the
        # message to this consumer after 1 s, starting a second run meanwhile.
        await asyncio.sleep(2.5)
        finished.set()

    async with running(app):
        await app.publish(f"{streams.prefix}.slow", {})
        await asyncio.wait_for(finished.wait(), 20)
    assert starts == [1]
    assert await pending(client, app.stream, app.durable) == 0
