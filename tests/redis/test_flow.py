"""Backpressure, per-key ordering, settings and the publisher, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Set

import pytest

from tests.redis.conftest import StreamNames, running
from tiny_listener import Data, Event, Param
from tiny_listener.codecs import RawCodec
from tiny_listener.redis import RedisPublisher, RedisStreamListener, default_consumer_name, publish

pytestmark = pytest.mark.broker

GROUP = "workers"


async def test_reads_no_more_messages_than_it_can_run(redis_url: str, names: StreamNames, redis: Any) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP, max_in_flight=5)
    running_now: Set[int] = set()
    most_at_once = 0
    handled: List[int] = []
    five_started = asyncio.Event()
    release = asyncio.Event()
    all_done = asyncio.Event()

    @app.on_event("job:{n:int}")
    async def job(n: Param) -> None:
        nonlocal most_at_once
        running_now.add(n)
        most_at_once = max(most_at_once, len(running_now))
        if len(running_now) == 5:
            five_started.set()
        await release.wait()
        running_now.discard(n)
        handled.append(n)
        if len(handled) == 20:
            all_done.set()

    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish_many(stream, [(f"job:{n}", {}) for n in range(20)])
    async with running(app):
        await five_started.wait()
        # Only what runs was read from the group: the other 15 are still undelivered.
        assert (await redis.xpending(stream, GROUP))["pending"] == 5
        assert app.in_flight == 5
        [group] = await redis.xinfo_groups(stream)
        assert group["lag"] == 15
        release.set()
        await all_done.wait()
    assert most_at_once == 5
    assert sorted(handled) == list(range(20))


async def test_events_with_the_same_key_run_one_at_a_time_in_order(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group=GROUP, order_by="account", max_in_flight=50
    )
    seen: Dict[str, List[int]] = {"a": [], "b": []}
    running_keys: Set[str] = set()
    b_started = asyncio.Event()
    all_done = asyncio.Event()

    @app.on_event("transfer:{account}:{seq:int}")
    async def transfer(account: Param, seq: Param) -> None:
        assert account not in running_keys, f"two events of account {account} ran at once"
        running_keys.add(account)
        if account == "b":
            b_started.set()
        elif seq == 0:
            # Account "a" waits for "b": other keys still run concurrently (or this never returns).
            await b_started.wait()
        for _ in range(3):
            await asyncio.sleep(0)  # let other handlers run in between
        running_keys.discard(account)
        seen[account].append(seq)
        if len(seen["a"]) + len(seen["b"]) == 40:
            all_done.set()

    events = [(f"transfer:{account}:{seq}", {}) for seq in range(20) for account in ("a", "b")]
    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish_many(stream, events)
    async with running(app):
        await all_done.wait()
    assert seen == {"a": list(range(20)), "b": list(range(20))}


async def test_order_by_function_and_data_key(redis_url: str, names: StreamNames) -> None:
    stream = names()
    keys: List[Any] = []

    def key_of(path: str, data: Any) -> Any:
        keys.append((path, data["customer"]))
        return data["customer"]

    app: RedisStreamListener[Any] = RedisStreamListener(redis_url, streams=[stream], group=GROUP, order_by=key_of)
    done = asyncio.Event()

    @app.on_event("pay")
    async def pay(customer: Data) -> None:
        done.set()

    await publish(stream, "pay", {"customer": [1, 2]}, url=redis_url)  # unhashable keys are fine too
    async with running(app):
        await done.wait()
    assert keys == [("pay", [1, 2])]


async def test_several_streams_and_a_custom_codec(redis_url: str, names: StreamNames, redis: Any) -> None:
    first, second = names("first"), names("second")
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[first, second], group=GROUP, codec=RawCodec(), dead_letter="{stream}:rejected"
    )
    got: List[Any] = []
    two = asyncio.Event()

    @app.on_event("blob:{n:int}")
    async def blob(n: Param, payload: Data, event: Event) -> None:
        got.append((event.ctx.scope["stream"], n, payload))
        if len(got) == 2:
            two.set()

    async with RedisPublisher(redis_url, codec=RawCodec()) as publisher:
        await publisher.publish(first, "blob:1", b"\x00\x01")
        await publisher.publish(second, "blob:2", "text")
        await publisher.publish(second, "nowhere", b"")
    async with running(app):
        await two.wait()
    assert sorted(got) == [(first, 1, b"\x00\x01"), (second, 2, b"text")]
    assert await redis.xlen(f"{second}:rejected") == 1
    # Each stream's messages were acknowledged on that stream (batches hold both streams' ids).
    assert [(await redis.xpending(stream, GROUP))["pending"] for stream in (first, second)] == [0, 0]


def test_settings_are_checked_when_the_listener_is_made() -> None:
    app: RedisStreamListener[Any] = RedisStreamListener(streams="orders")
    assert app.config.streams == ("orders",)
    assert app.consumer == default_consumer_name()
    assert app.config.dead_letter_stream("orders") == "orders:dead"
    with pytest.raises(ValueError, match="max_in_flight"):
        RedisStreamListener(streams=["a", "b", "c"], max_in_flight=2)
    with pytest.raises(ValueError, match="each once"):
        RedisStreamListener(streams=["a", "a"])
    with pytest.raises(ValueError, match="claim_idle"):
        RedisStreamListener(streams=["a"], claim_idle=0)
    with pytest.raises(RuntimeError, match="not running"):
        _ = app.redis


def test_delivery_settings_are_checked_and_kept_as_by_the_other_broker_listeners() -> None:
    with pytest.raises(ValueError, match="max_in_flight must be at least 1, not 0"):
        RedisStreamListener(streams=["a"], max_in_flight=0)
    with pytest.raises(ValueError, match="max_retries must be 0 or more, not -1"):
        RedisStreamListener(streams=["a"], max_retries=-1)
    app: RedisStreamListener[Any] = RedisStreamListener(
        streams=["a"], max_in_flight=5, max_retries=0, retry_backoff=0.25, reconnect_backoff=0.5
    )
    assert (app.max_in_flight, app.max_retries) == (5, 0)
    assert (app.retry_backoff, app.reconnect_backoff) == (0.25, 0.5)
    assert (app.max_retry_delay, app.max_reconnect_delay) == (30.0, 10.0)
