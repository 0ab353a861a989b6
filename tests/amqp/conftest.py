"""Fixtures for the RabbitMQ listener tests: a reachable broker, unique queue names that are
deleted afterwards, and a plain aio-pika channel to publish and inspect with."""

from __future__ import annotations

import uuid
from typing import Any, AsyncIterator, List

import pytest

from tests.conftest import require_service
from tiny_listener.amqp import DEFAULT_URL, AMQPListener
from tiny_listener.amqp._topology import retry_delays_ms, retry_queue_name

aio_pika = pytest.importorskip("aio_pika")


class Names:
    """Unique queue/exchange names for one test, and the listeners made with them; every queue
    and exchange they use (with the listeners' retry and dead-letter queues) is deleted
    afterwards."""

    def __init__(self) -> None:
        self.prefix = f"tl-test-{uuid.uuid4().hex[:10]}"
        self.queues: List[str] = []
        self.exchanges: List[str] = []

    def queue(self, suffix: str = "q") -> str:
        name = f"{self.prefix}.{suffix}"
        self.queues.append(name)
        return name

    def exchange(self, suffix: str = "x") -> str:
        name = f"{self.prefix}.{suffix}"
        self.exchanges.append(name)
        return name

    def app(self, **options: Any) -> AMQPListener[Any]:
        """An :class:`AMQPListener` on a new queue (unless ``queue`` is given), with short
        retry delays, whose queues are deleted after the test."""
        options.setdefault("queue", self.queue())
        options.setdefault("retry_backoff", 0.05)
        app: AMQPListener[Any] = AMQPListener(**options)
        for delay_ms in retry_delays_ms(app.max_retries, app.retry_backoff, app.max_retry_delay):
            self.queues.append(retry_queue_name(app.queue, delay_ms))
        if app.dead_letter_queue is not None:
            self.queues.append(app.dead_letter_queue)
        return app


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    found = Names()
    yield found
    connection = await aio_pika.connect(DEFAULT_URL)
    async with connection:
        channel = await connection.channel()
        for name in dict.fromkeys(found.queues):
            await channel.queue_delete(name)
        for name in found.exchanges:
            await channel.exchange_delete(name)


@pytest.fixture
async def channel() -> AsyncIterator[Any]:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    connection = await aio_pika.connect(DEFAULT_URL)
    async with connection:
        yield await connection.channel()


async def message_count(channel: Any, queue: str) -> int:
    """How many messages wait (ready) in ``queue``."""
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count)


async def get_all(channel: Any, queue: str, expected: int) -> List[Any]:
    """Take ``expected`` messages from ``queue`` (waiting for them), acknowledging them."""
    declared = await channel.declare_queue(queue, passive=True)
    taken: List[Any] = []
    async with declared.iterator() as messages:
        async for message in messages:
            await message.ack()
            taken.append(message)
            if len(taken) == expected:
                break
    return taken
