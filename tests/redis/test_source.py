"""RedisStreamSource on the one delivery flow: the URL checked when it is made, its state and
health through a Redis restart, hosted by any listener, and dead_letter=False."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List

import pytest

from tests.log_watch import watching_log
from tests.redis.conftest import RedisServer, StreamNames, running
from tiny_listener import Event, Listener, Param
from tiny_listener.redis import RedisPublisher, RedisStreamConfig, RedisStreamListener, RedisStreamSource
from tiny_listener.sources import SourceState

pytestmark = pytest.mark.broker


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://127.0.0.1:6379/0", r"Redis URL 'http://127.0.0.1:6379/0' has scheme 'http': expected redis://"),
        ("127.0.0.1:6379", r"Redis URL '127.0.0.1:6379' has no scheme: expected redis://"),
        ("redis://127.0.0.1:63a9/0", r"malformed Redis URL 'redis://127.0.0.1:63a9/0' \(.*\): expected redis://"),
        ("redis:///0", r"Redis URL 'redis:///0' names no host: expected redis://"),
        ("redis://127.0.0.1:6379/zero", r"Redis URL 'redis://127.0.0.1:6379/zero' names database 'zero', not a "
                                        r"number: expected redis://"),
        ("unix://", r"Redis URL 'unix://' names no socket path: expected redis://"),
        ("redis://me:secret@127.0.0.1:6379/x", r"Redis URL 'redis://me:\*\*\*@127.0.0.1:6379/x' names database"),
    ],
)
def test_a_url_redis_cannot_take_is_refused_when_the_listener_is_made(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as refused:
        RedisStreamListener(url, streams=["orders"])
    assert "secret" not in str(refused.value)
    assert "(or rediss://..., unix:///path/to/redis.sock)" in str(refused.value)


def test_the_urls_redis_takes_are_accepted() -> None:
    for url in ("redis://localhost", "rediss://user:pw@redis.internal:6380/3", "unix:///run/redis.sock",
                "redis://[::1]:6379/0"):
        assert RedisStreamListener(url, streams=["orders"]).url == url


def test_the_settings_are_the_sources_attributes_and_the_config_is_the_source() -> None:
    app: RedisStreamListener[Any] = RedisStreamListener(streams="orders", group="billing", claim_idle=5)
    assert app.config is app.source and RedisStreamConfig is RedisStreamSource
    app.max_in_flight = 7
    assert app.source.max_in_flight == 7
    assert (app.config.group, app.config.claim_idle, app.source.dead_letter_stream("a")) == ("billing", 5, "a:dead")
    assert RedisStreamListener(streams="orders", dead_letter=False).config.dead_letter_stream("orders") is None
    assert RedisStreamListener(streams="orders", dead_letter=True).config.dead_letter_stream("o") == "o:dead"


async def test_state_goes_reconnecting_while_redis_is_away_and_ready_when_it_is_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.redis")
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_server.url, streams=["orders"], group="billing", reconnect_backoff=0.05, max_reconnect_delay=0.2
    )
    source = app.source
    handled: List[int] = []
    got = asyncio.Event()

    @app.on_event("order:{n:int}")
    async def order(n: Param) -> None:
        handled.append(n)
        got.set()

    with watching_log("tiny_listener.redis", "reconnected to Redis") as reconnected:
        async with running(app):
            await asyncio.wait_for(source.wait_ready(), 10)
            health = app.health()
            assert health["status"] == "ready"
            assert health["sources"]["redis"]["state"] == "ready"
            assert health["sources"]["redis"]["url"] == redis_server.url
            redis_server.stop()
            await asyncio.wait_for(source.wait_state(SourceState.RECONNECTING), 10)
            assert not app.ready and not app.connected
            assert app.health()["sources"]["redis"]["state"] == "reconnecting"
            redis_server.start()
            await asyncio.wait_for(source.wait_state(SourceState.READY), 20)
            assert app.ready and app.connected
            await asyncio.wait_for(reconnected.wait(), 10)
            async with RedisPublisher(redis_server.url) as publisher:
                await publisher.publish("orders", "order:1")
            await asyncio.wait_for(got.wait(), 10)
    assert handled == [1]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "tiny_listener.redis"]
    assert ("WARNING", f"reconnected to Redis at {redis_server.url}: consuming stream 'orders' as consumer "
                       f"{app.consumer!r} of group 'billing' again") in lines
    assert any(message.startswith(f"Redis at {redis_server.url} is unreachable") for _, message in lines)


async def test_a_redis_source_hosted_by_a_plain_listener(redis_url: str, names: StreamNames) -> None:
    stream = names()
    app: Listener[Any] = Listener()
    source = app.add_source(RedisStreamSource(redis_url, streams=[stream], group="workers", name="orders"))
    got = asyncio.Event()
    seen: List[Any] = []

    @app.on_event("order:{n:int}")
    async def order(n: Param) -> None:
        seen.append((n, source.redis is not None))
        got.set()

    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish(stream, "order:3", {})
    async with running(app):
        await asyncio.wait_for(got.wait(), 10)
        assert app.health()["sources"]["orders"]["consumer"] == source.consumer
    assert seen == [(3, True)]
    with pytest.raises(RuntimeError, match="not running"):
        _ = source.redis


async def test_without_a_dead_letter_stream_a_failed_message_is_logged_and_acknowledged(
    redis_url: str, names: StreamNames, redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stream = names()
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[stream], group="workers", max_retries=0, dead_letter=False
    )

    @app.on_event("job")
    async def job() -> None:
        raise ValueError("no luck")

    async with RedisPublisher(redis_url) as publisher:
        await publisher.publish(stream, "job")
    with watching_log("tiny_listener.redis", "dropped") as dropped:
        async with running(app):
            await asyncio.wait_for(dropped.wait(), 10)
    assert (await redis.xpending(stream, "workers"))["pending"] == 0
    assert await redis.exists(f"{stream}:dead") == 0
    [record] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_claimed_messages_of_two_streams_with_one_id_keep_their_own_delivery_counts(
    redis_url: str, names: StreamNames, redis: Any
) -> None:
    once, thrice = names("once"), names("thrice")
    for stream, deliveries in ((once, 1), (thrice, 3)):
        await redis.xadd(stream, {"path": f"job:{deliveries}", "data": "{}"}, id="1-1")
        await redis.xgroup_create(stream, "workers", id="0")
        await redis.xreadgroup("workers", "ghost", {stream: ">"})
        for _ in range(deliveries - 1):  # claimed by other consumers that died in turn
            await redis.xclaim(stream, "workers", "ghost", 0, ["1-1"])
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_url, streams=[once, thrice], group="workers", claim_idle=0.2, max_retries=5
    )
    attempts: Dict[int, int] = {}
    both = asyncio.Event()

    @app.on_event("job:{n:int}")
    async def job(n: Param, event: Event) -> None:
        attempts[n] = event.ctx.scope["attempt"]
        if len(attempts) == 2:
            both.set()

    async with running(app):
        await asyncio.wait_for(both.wait(), 10)
    # Each claim counts as one more delivery: 1 + 1 and 3 + 1.
    assert attempts == {1: 2, 3: 4}
