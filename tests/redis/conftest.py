"""Fixtures for the Redis Streams tests: a real Redis, unique stream names, a running listener,
and a private ``redis-server`` for the tests that stop and restart it."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Iterator, List

import pytest

from tests.conftest import free_port, require_service, service_reachable
from tests.log_watch import LogWatch, watching_log
from tiny_listener import Listener, Param

redis_asyncio = pytest.importorskip("redis.asyncio")

SHARED_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return SHARED_URL


class StreamNames:
    """Unique stream names for one test; every key made with it is deleted afterwards."""

    def __init__(self) -> None:
        self.prefix = f"tl-test-{uuid.uuid4().hex[:10]}"
        self.made: List[str] = []

    def __call__(self, name: str = "events") -> str:
        key = f"{self.prefix}:{name}"
        self.made.append(key)
        return key


@pytest.fixture
async def names(redis_url: str) -> AsyncIterator[StreamNames]:
    made = StreamNames()
    yield made
    client = redis_asyncio.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{made.prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = redis_asyncio.from_url(redis_url)
    yield client
    await client.aclose()


class Orders:
    """Registers ``order:{n:int}`` on an app: ``handled`` lists each ``n`` handled, in order;
    ``got[n]`` is set once order ``n`` was (for n < ``count``)."""

    def __init__(self, app: Listener[Any], count: int = 2) -> None:
        self.handled: List[int] = []
        self.got = [asyncio.Event() for _ in range(count)]

        @app.on_event("order:{n:int}")
        async def order(n: Param) -> None:
            self.handled.append(n)
            self.got[n].set()


@asynccontextmanager
async def running(app: Listener[Any]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app`` in a task; on exit, shut it down gracefully and wait for it to end."""
    task = asyncio.create_task(app.main())
    try:
        yield task
    finally:
        await app.graceful_shutdown()
        await task


class RedisServer:
    """A ``redis-server`` on a free loopback port, without persistence, restartable."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not service_reachable("127.0.0.1", self.port, timeout=0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a process we started: there is nothing to await

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dead_lettered() -> Iterator[LogWatch]:
    """Watches for the log lines of dead letters written, with logger ``tiny_listener.redis`` at
    DEBUG meanwhile so that no level set elsewhere hides them."""
    logger = logging.getLogger("tiny_listener.redis")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with watching_log("tiny_listener.redis", "dead-lettered") as watch:
            yield watch
    finally:
        logger.setLevel(previous)
