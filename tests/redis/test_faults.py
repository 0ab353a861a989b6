"""Redis going away under a running listener: a private redis-server, killed and restarted."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest

from tests.log_watch import watching_log
from tests.redis.conftest import Orders, RedisServer, running
from tiny_listener import Param
from tiny_listener.redis import RedisPublisher, RedisStreamListener

pytestmark = pytest.mark.broker


async def publish_when_up(url: str, stream: str, path: str) -> None:
    """Publish, retrying while the server is still starting (the publisher does not retry)."""
    exceptions = pytest.importorskip("redis.exceptions")
    for _ in range(100):
        try:
            async with RedisPublisher(url) as publisher:
                await publisher.publish(stream, path)
            return
        except (exceptions.ConnectionError, OSError):
            await asyncio.sleep(0.05)  # backoff for a server started by this test
    raise AssertionError(f"could not publish to {url}")


async def test_reconnects_and_recreates_its_group_after_redis_restarts(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.redis")
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_server.url, streams=["orders"], group="billing", reconnect_backoff=0.05
    )
    orders = Orders(app)
    handled, got = orders.handled, orders.got

    with watching_log("tiny_listener.redis", "reconnected to Redis") as reconnected:
        async with running(app):
            await publish_when_up(redis_server.url, "orders", "order:0")
            await got[0].wait()
            redis_server.stop()  # SIGKILL: the stream and the group are gone with it (no persistence)
            redis_server.start()
            await reconnected.wait()
            await publish_when_up(redis_server.url, "orders", "order:1")
            await got[1].wait()
    assert handled == [0, 1]
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith(f"Redis at {redis_server.url} is unreachable") for message in messages)
    assert any("consumer group 'billing' of stream 'orders' is gone from Redis" in message for message in messages)


async def test_waits_for_redis_at_startup(redis_server: RedisServer) -> None:
    redis_server.stop()
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_server.url, streams=["orders"], group="billing", reconnect_backoff=0.05
    )
    got = asyncio.Event()

    @app.on_event("order:{n:int}")
    async def order(n: Param) -> None:
        got.set()

    with watching_log("tiny_listener.redis", "is unreachable") as unreachable:
        async with running(app):
            await unreachable.wait()
            redis_server.start()
            await publish_when_up(redis_server.url, "orders", "order:1")
            await got.wait()


async def test_shutdown_completes_while_redis_is_away(redis_server: RedisServer) -> None:
    # An acknowledgement caught by the outage keeps trying until the shutdown deadline; the
    # reader, stuck in its reconnect loop, must give up at once (step 1 has no deadline).
    app: RedisStreamListener[Any] = RedisStreamListener(
        redis_server.url, streams=["orders"], group="billing", reconnect_backoff=0.05, shutdown_timeout=0.5
    )

    @app.on_event("order:{n:int}")
    async def order(n: Param) -> None:
        pass

    with watching_log("tiny_listener.redis", "is unreachable") as unreachable:
        task = asyncio.create_task(app.main())
        await publish_when_up(redis_server.url, "orders", "order:1")
        redis_server.stop()
        await unreachable.wait()
        await app.graceful_shutdown()
        await task  # the reader gives up its reconnect loop instead of holding the shutdown


async def test_missing_redis_client_is_reported_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tiny_listener.optional import MissingExtraError
    from tiny_listener.redis import publish

    for name in [module for module in sys.modules if module == "redis" or module.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    app: RedisStreamListener[Any] = RedisStreamListener(streams=["orders"])  # made without redis-py
    with pytest.raises(MissingExtraError, match=r"tiny-listener\[redis\]"):
        await app.main()
    with pytest.raises(MissingExtraError, match=r"tiny-listener\[redis\]"):
        await publish("orders", "order:1")
