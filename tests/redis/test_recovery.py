"""Crash recovery (XAUTOCLAIM), graceful shutdown and dead-letter replay against a real Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List

import pytest

from tests.log_watch import LogWatch, watching_log
from tests.redis.conftest import Orders, StreamNames, running
from tiny_listener import Event, Param
from tiny_listener.redis import RedisPublisher, RedisStreamListener, read_dead_letters, replay_dead_letters

pytestmark = pytest.mark.broker

GROUP = "workers"


async def read_as_dead_consumer(redis: Any, stream: str, count: int) -> List[bytes]:
    """Take ``count`` messages as consumer "ghost", which then never acknowledges them."""
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    reply = await redis.xreadgroup(GROUP, "ghost", {stream: ">"}, count=count)
    return [message_id for message_id, _ in reply[0][1]]


async def pending_of(redis: Any, stream: str, consumer: str) -> List[bytes]:
    entries = await redis.xpending_range(stream, GROUP, min="-", max="+", count=1000, consumername=consumer)
    return [entry["message_id"] for entry in entries]


async def test_claims_messages_left_pending_by_a_dead_consumer(redis_url: str, names: StreamNames, redis: Any) -> None:
    stream = names()
    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish_many(stream, [(f"job:{n}", {}) for n in range(5)])
    abandoned = await read_as_dead_consumer(redis, stream, 3)
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP, claim_idle=0.2)
    attempts: Dict[int, int] = {}
    all_done = asyncio.Event()

    @app.on_event("job:{n:int}")
    async def job(n: Param, event: Event) -> None:
        attempts[n] = event.ctx.scope["attempt"]
        if len(attempts) == 5:
            all_done.set()

    async with running(app):
        await all_done.wait()
    # The three the ghost took were claimed: their earlier delivery counts as an attempt.
    assert attempts == {0: 2, 1: 2, 2: 2, 3: 1, 4: 1}
    assert len(abandoned) == 3
    assert await pending_of(redis, stream, "ghost") == []
    assert (await redis.xpending(stream, GROUP))["pending"] == 0


async def test_message_delivered_too_often_is_dead_lettered_not_run(
    redis_url: str, names: StreamNames, redis: Any, dead_lettered: LogWatch
) -> None:
    """A message whose consumers keep dying while handling it (a poison message) stops there."""
    stream = names()
    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish(stream, "job:1")
    [message_id] = await read_as_dead_consumer(redis, stream, 1)
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, claim_idle=0.2, max_retries=0
    )
    ran: List[int] = []

    @app.on_event("job:{n:int}")
    async def job(n: Param) -> None:
        ran.append(n)

    async with running(app):
        await dead_lettered.wait()
    [letter] = await read_dead_letters(f"{stream}:dead", url=redis_url)
    assert ran == []
    assert letter.source_id == message_id
    assert letter.reason == "redelivered-too-often"
    assert letter.error == "delivered 1 times without being acknowledged: its consumers stopped or died"
    assert (await redis.xpending(stream, GROUP))["pending"] == 0


async def test_long_handler_is_not_claimed_away_from_a_live_consumer(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    stream = names()
    first: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, consumer="first", claim_idle=0.2
    )
    second: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, consumer="second", claim_idle=0.2
    )
    runs: List[str] = []
    started = asyncio.Event()
    finish = asyncio.Event()

    async def slow(event: Event) -> None:
        runs.append(event.listener.consumer)
        started.set()
        await finish.wait()

    first.add_on_event_hook(slow, "slow")
    second.add_on_event_hook(slow, "slow")
    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish(stream, "slow")
    async with running(first):
        await started.wait()
        async with running(second):
            # Time must pass here, not an event: twenty claim periods of the second consumer,
            # five times claim_idle, during which the first keeps its message fresh.
            await asyncio.sleep(5 * second.config.claim_idle)
            finish.set()
    assert runs == ["first"]
    assert (await redis.xpending(stream, GROUP))["pending"] == 0


async def test_graceful_shutdown_leaves_unfinished_messages_pending(
    redis_url: str, names: StreamNames, redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, consumer="leaver", shutdown_timeout=0.2, retry_backoff=60
    )
    started: Dict[str, asyncio.Event] = {name: asyncio.Event() for name in ("quick", "stuck", "failing")}

    @app.on_event("{name}")
    async def handler(name: Param) -> None:
        started[name].set()
        if name == "stuck":
            await asyncio.Event().wait()  # never finishes: cancelled at the deadline
        if name == "failing":
            raise RuntimeError("retried in 60 s, after the shutdown")

    async with RedisPublisher(redis_url) as publisher:
        _, stuck, failing = await publisher.publish_many(stream, [("quick", {}), ("stuck", {}), ("failing", {})])
    caplog.set_level(logging.INFO, "tiny_listener.redis")
    async with running(app):
        for event in started.values():
            await event.wait()
    assert sorted(await pending_of(redis, stream, "leaver")) == sorted([stuck, failing])
    stays = [record.getMessage() for record in caplog.records if "stays pending" in record.getMessage()]
    assert stays == [f"shutting down: message {failing.decode()} of {stream!r} stays pending for another consumer"]
    assert await redis.exists(f"{stream}:dead") == 0


async def test_replayed_dead_letters_are_handled_once_the_cause_is_fixed(
    redis_url: str, names: StreamNames, redis: Any, dead_lettered: LogWatch
) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP, max_retries=0)
    handled: List[int] = []
    both = asyncio.Event()

    @app.on_event("order:{n:int}")
    async def order(n: Param) -> None:
        handled.append(n)
        if len(handled) == 2:
            both.set()

    await redis.xadd(stream, {"path": "orders:1", "data": "{}"})  # a typo: no route matches
    await redis.xadd(stream, {"path": "orders:2", "data": "{}"})
    async with running(app):
        await dead_lettered.wait(2)
    letters = await read_dead_letters(f"{stream}:dead", url=redis_url)
    assert sorted(letter.path or "" for letter in letters) == ["orders:1", "orders:2"]

    # Fix the cause (here: the route) and replay.
    @app.on_event("orders:{n:int}")
    async def orders(n: Param) -> None:
        handled.append(n)
        if len(handled) == 2:
            both.set()

    assert await replay_dead_letters(f"{stream}:dead", client=redis, count=5) == 2
    assert await redis.xlen(f"{stream}:dead") == 0
    async with running(app):
        await both.wait()
    assert sorted(handled) == [1, 2]


async def test_consumer_restarted_under_its_name_takes_its_pending_messages_back_at_once(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    stream = names()
    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish_many(stream, [(f"job:{n}", None) for n in range(4)])
    await redis.xgroup_create(stream, GROUP, id="0")
    await redis.xreadgroup(GROUP, "worker-a", {stream: ">"}, count=3)  # then "worker-a" crashed
    # claim_idle of an hour: only re-reading its own pending entries can bring these back.
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, consumer="worker-a", claim_idle=3600
    )
    handled: List[int] = []
    all_done = asyncio.Event()

    @app.on_event("job:{n:int}")
    async def job(n: Param) -> None:
        handled.append(n)
        if len(handled) == 4:
            all_done.set()

    async with running(app):
        await all_done.wait()
    assert handled == [0, 1, 2, 3]
    assert (await redis.xpending(stream, GROUP))["pending"] == 0


async def test_pending_message_deleted_from_the_stream_is_acknowledged_not_handled(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    stream = names()
    async with RedisPublisher(redis_url) as publisher:
        gone, _ = await publisher.publish_many(stream, [("job:1", None), ("job:2", None)])
    await redis.xgroup_create(stream, GROUP, id="0")
    await redis.xreadgroup(GROUP, "worker-a", {stream: ">"}, count=2)
    await redis.xdel(stream, gone)  # trimmed or deleted while pending
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, consumer="worker-a", claim_idle=3600
    )
    handled: List[int] = []
    done = asyncio.Event()

    @app.on_event("job:{n:int}")
    async def job(n: Param) -> None:
        handled.append(n)
        done.set()

    async with running(app):
        await done.wait()
    assert handled == [2]
    assert await pending_of(redis, stream, "worker-a") == []


@pytest.mark.parametrize("loss", ["stream deleted", "group destroyed"])
async def test_a_stream_or_group_deleted_under_a_running_worker_is_made_again(
    redis_url: str, names: StreamNames, redis: Any, caplog: pytest.LogCaptureFixture, loss: str
) -> None:
    """``DEL`` of the stream (Redis ends the worker's blocked read with "UNBLOCKED the stream
    key no longer exists") or ``XGROUP DESTROY``: said once, the group made again, and what is
    published next is handled; the source never fails."""
    caplog.set_level(logging.INFO, "tiny_listener")
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP)
    orders = Orders(app)
    handled, got = orders.handled, orders.got

    async with running(app), RedisPublisher(redis_url) as publisher:
        await publisher.publish(stream, "order:0")
        await asyncio.wait_for(got[0].wait(), 10)
        made_again = f"consumer group {GROUP!r} of stream {stream!r} is gone from Redis at "
        with watching_log("tiny_listener.redis", made_again) as remade:
            if loss == "stream deleted":
                await redis.delete(stream)
            else:
                await redis.xgroup_destroy(stream, GROUP)
            await asyncio.wait_for(remade.wait(), 10)
        await publisher.publish(stream, "order:1")
        await asyncio.wait_for(got[1].wait(), 10)
        assert app.source.health()["state"] == "ready"
    # A group made again starts at the beginning of its stream: what the stream still holds
    # is handled again (at least once), here order 0 when only the group was destroyed.
    assert handled == ([0, 1] if loss == "stream deleted" else [0, 0, 1])
    said = [record.getMessage() for record in caplog.records]
    assert len([line for line in said if "is gone from" in line]) == 1
    assert [line for line in said if "failed" in line] == []
