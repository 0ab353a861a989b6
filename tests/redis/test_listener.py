"""RedisStreamListener against a real Redis: acknowledgement, retries, dead letters, crash
recovery, ordering, backpressure and shutdown."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from tests.redis.conftest import StreamNames, running
from tiny_listener import Data, Event, Param
from tiny_listener.redis import RedisPublisher, RedisStreamListener, read_dead_letters

pytestmark = pytest.mark.broker

GROUP = "workers"


async def pending_count(redis: Any, stream: str, group: str = GROUP) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def test_acknowledges_only_after_the_handler_succeeded(redis_url: str, names: StreamNames, redis: Any) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP)
    seen_pending: List[int] = []
    handled = asyncio.Event()

    @app.on_event("order:{order_id:int}:created")
    async def bill(order_id: Param, amount: Data, event: Event) -> None:
        # While the handler runs, the message is still pending: not acknowledged yet.
        seen_pending.append(await pending_count(app.redis, stream))
        assert (order_id, amount, event.ctx.scope["attempt"]) == (7, 12.5, 1)
        handled.set()

    async with RedisPublisher(redis_url) as publisher:
        message_id = await publisher.publish(stream, "order:7:created", {"amount": 12.5})
    async with running(app):
        await handled.wait()
    assert seen_pending == [1]
    assert await pending_count(redis, stream) == 0
    assert [entry["name"] for entry in await redis.xinfo_groups(stream)] == [GROUP.encode()]
    assert (await redis.xrange(stream))[0][0] == message_id
    assert await redis.exists(f"{stream}:dead") == 0


async def test_failed_handler_is_retried_then_succeeds(redis_url: str, names: StreamNames, redis: Any) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=stream, group=GROUP, max_retries=3, retry_backoff=0.01
    )
    attempts: List[int] = []
    done = asyncio.Event()

    @app.on_event("flaky")
    async def flaky(event: Event) -> None:
        attempts.append(event.ctx.scope["attempt"])
        if len(attempts) < 3:
            raise ConnectionResetError("downstream hiccup")
        done.set()

    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish(stream, "flaky")
    async with running(app):
        await done.wait()
    assert attempts == [1, 2, 3]
    assert await pending_count(redis, stream) == 0
    assert await redis.exists(f"{stream}:dead") == 0


async def test_handler_failing_every_time_is_dead_lettered_with_the_error(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, max_retries=2, retry_backoff=0.01
    )
    calls: List[int] = []
    third_call = asyncio.Event()

    @app.on_event("order:{order_id:int}:created")
    async def bill(order_id: Param) -> None:
        calls.append(order_id)
        if len(calls) == 3:
            third_call.set()
        raise ValueError(f"order {order_id} cannot be billed")

    async with RedisPublisher(redis_url) as publisher:
        message_id = await publisher.publish(stream, "order:5:created", {"amount": 3})
    async with running(app):
        await third_call.wait()
    # Shutdown waited for the move to the dead-letter stream.
    assert calls == [5, 5, 5]
    [letter] = await read_dead_letters(f"{stream}:dead", url=redis_url)
    assert letter.original == {b"path": b"order:5:created", b"data": b'{"amount":3}'}
    assert letter.path == "order:5:created"
    assert letter.reason == "handler-failed"
    assert letter.error == "ValueError('order 5 cannot be billed')"
    assert (letter.stream, letter.source_id, letter.attempts) == (stream, message_id, 3)
    assert await pending_count(redis, stream) == 0


async def test_unknown_route_and_undecodable_messages_are_dead_lettered_at_once(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP, max_retries=5)
    handled: List[Any] = []
    last_handled = asyncio.Event()

    @app.on_event("known:{n:int}")
    async def known(n: Param, event: Event) -> None:
        handled.append((n, event.data))
        last_handled.set()

    await redis.xadd(stream, {"path": "unknown:1", "data": "{}"})
    await redis.xadd(stream, {"path": "known:2", "data": "{not json"})
    await redis.xadd(stream, {"data": "{}"})
    await redis.xadd(stream, {"path": b"\xff\xfe", "data": "{}"})
    await redis.xadd(stream, {"path": "known:3", "data": "[1, 2]"})
    async with running(app):
        # All five entries come in one read; shutdown waits for the dead letters still being written.
        await last_handled.wait()
    letters = await read_dead_letters(f"{stream}:dead", url=redis_url)
    outcomes = sorted((letter.reason, letter.error.split(":")[0]) for letter in letters)
    assert outcomes == [
        ("no-route", "no route matches event path 'unknown"),
        ("undecodable", "message has no 'path' field"),
        ("undecodable", "message path is not UTF-8"),
        ("undecodable", "payload is not valid JSON"),  # the codec's DecodeError, as on every broker
    ]
    assert all(letter.attempts == 0 for letter in letters)
    assert handled == [(3, {"payload": [1, 2]})]
    assert await pending_count(redis, stream) == 0


async def test_entries_written_by_other_tools_are_read_by_field_name(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    # RedisPublisher writes "path" then "data"; redis-cli or another client may write them in
    # another order, with fields of their own, or without data.
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP)
    handled: List[Any] = []
    all_handled = asyncio.Event()

    @app.on_event("item:{n:int}")
    async def item(n: Param, event: Event) -> None:
        handled.append((n, event.data, event.ctx.scope["fields"]))
        if len(handled) == 3:
            all_handled.set()

    await redis.xadd(stream, {"data": '{"a": 1}', "path": "item:1"})
    await redis.xadd(stream, {"path": "item:2", "trace": "t-2", "data": '{"a": 2}'})
    await redis.xadd(stream, {"path": "item:3"})
    async with running(app):
        await all_handled.wait()
    assert sorted(handled) == [
        (1, {"a": 1}, {b"data": b'{"a": 1}', b"path": b"item:1"}),
        (2, {"a": 2}, {b"path": b"item:2", b"trace": b"t-2", b"data": b'{"a": 2}'}),
        (3, {}, {b"path": b"item:3"}),
    ]
    assert await pending_count(redis, stream) == 0
