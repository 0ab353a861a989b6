"""AMQPListener when things go wrong: RabbitMQ closes the connection, a consumer process is
killed in the middle of an event. Nothing may be lost."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import uuid
from typing import Any, Iterator, List

import pytest

from tests.broker_listeners import running
from tests.log_watch import LogWatch, watching_log
from tests.worker_processes import Workers
from tiny_listener import Event, Param

from .conftest import Names, aio_pika, message_count


@pytest.fixture
def lost_connection_log() -> Iterator[LogWatch]:
    with watching_log("tiny_listener.amqp", "stopped (") as watch:
        yield watch


async def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl and return its output; skip the test if it cannot be used here."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot manage the local node: {err.decode(errors='replace').strip()}")
    return out.decode()


async def close_connection_named(name: str) -> None:
    """Have RabbitMQ close the client connection called ``name``."""
    listing = await rabbitmqctl("list_connections", "pid", "client_properties", "--no-table-headers")
    pids = [line.split()[0] for line in listing.splitlines() if name in line]
    assert len(pids) == 1, listing
    await rabbitmqctl("close_connection", pids[0], "closed by tiny-listener fault test")


async def test_reconnects_after_the_server_closes_the_connection(
    names: Names, channel: Any, lost_connection_log: LogWatch
) -> None:
    connection_name = f"tl-fault-{uuid.uuid4().hex[:8]}"
    app = names.app(connection_name=connection_name, reconnect_backoff=0.05, max_in_flight=4)
    handled: List[int] = []
    first_started = asyncio.Event()
    release_first = asyncio.Event()
    all_handled = asyncio.Event()
    total = 20

    @app.on_event("job:{n:int}")
    async def job(n: Param) -> None:
        if n == 0:
            first_started.set()
            await release_first.wait()
        handled.append(n)
        if set(handled) == set(range(total)) and handled.count(0) == 2:
            all_handled.set()

    async with running(app):
        await app.publish("job:0", {})
        await asyncio.wait_for(first_started.wait(), 10)
        await close_connection_named(connection_name)
        await asyncio.wait_for(lost_connection_log.wait(), 20)
        # Job 0 finishes now, on a closed channel: its ack cannot reach RabbitMQ, which
        # has requeued it, so it must run again after the reconnect.
        release_first.set()
        for n in range(1, total):
            body = b"{}"
            await channel.default_exchange.publish(
                aio_pika.Message(body, headers={"x-event-path": f"job:{n}"}), routing_key=app.queue
            )
        await asyncio.wait_for(all_handled.wait(), 30)
    assert sorted(set(handled)) == list(range(total))
    assert handled.count(0) == 2
    assert await message_count(channel, app.queue) == 0


async def test_message_of_a_killed_consumer_is_handled_by_another(names: Names, channel: Any) -> None:
    queue = names.queue()
    async with Workers("tests.amqp._worker") as workers:
        worker = await workers.start(queue)
        app = names.app(queue=queue)
        handled: List[Any] = []
        done = asyncio.Event()

        @app.on_event("order:{id}")
        async def order(event: Event, id: Param) -> None:
            handled.append((id, event.ctx.scope["message"].redelivered))
            done.set()

        # The worker is the only consumer: it gets the message, then dies in its handler.
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", headers={"x-event-path": "order:9"}), routing_key=queue, mandatory=True
        )
        assert await worker.next_line() == "started order:9"
        await worker.kill()
        async with running(app):
            await asyncio.wait_for(done.wait(), 30)
        assert handled == [("9", True)]
        assert await message_count(channel, queue) == 0


class Proxy:
    """A loopback TCP proxy to RabbitMQ, opened on ``port`` only when ``start`` is called."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 5672)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


async def test_keeps_retrying_until_the_broker_is_reachable(names: Names, channel: Any) -> None:
    from tests.conftest import free_port

    proxy = Proxy(free_port())
    app = names.app(url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", reconnect_backoff=0.05)
    handled = asyncio.Event()

    @app.on_event("hello")
    async def hello() -> None:
        handled.set()

    with watching_log("tiny_listener.amqp", "retrying in") as refused:
        task = asyncio.create_task(app.main())
        try:
            await asyncio.wait_for(refused.wait(), 20)  # nothing listens on the port yet
            await proxy.start()
            await asyncio.wait_for(app.wait_connected(), 20)
            await app.publish("hello", {})
            await asyncio.wait_for(handled.wait(), 10)
        finally:
            app.stop()
            await asyncio.wait_for(task, 30)
            await proxy.close()
    assert await message_count(channel, app.queue) == 0


async def test_starts_over_when_rabbitmq_closes_the_channel(
    names: Names, channel: Any, lost_connection_log: LogWatch
) -> None:
    app = names.app(reconnect_backoff=0.05)
    runs: List[bool] = []
    handled_again = asyncio.Event()

    @app.on_event("poison")
    async def poison(event: Event) -> None:
        message = event.ctx.scope["message"]
        runs.append(message.redelivered)
        if not message.redelivered:
            # Acknowledging an unknown delivery tag is a channel error: RabbitMQ closes the
            # channel (406 PRECONDITION_FAILED) and keeps the connection.
            await message.channel.basic_ack(delivery_tag=10**9)
        else:
            handled_again.set()

    async with running(app):
        await app.publish("poison", {})
        await asyncio.wait_for(lost_connection_log.wait(), 20)
        await asyncio.wait_for(handled_again.wait(), 20)
    assert runs == [False, True]
    assert await message_count(channel, app.queue) == 0


async def test_queue_deleted_under_the_listener_is_declared_again(
    names: Names, channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import aiormq

    if "on_consumer_cancel_callbacks" not in inspect.getsource(aiormq.channel.Channel.__init__):
        pytest.skip("this aiormq does not report consumers cancelled by RabbitMQ")
    app = names.app(reconnect_backoff=0.05)
    handled = asyncio.Event()

    @app.on_event("after")
    async def after() -> None:
        handled.set()

    with watching_log("tiny_listener.amqp", "cancelled consuming") as cancelled:
        async with running(app):
            await channel.queue_delete(app.queue)  # RabbitMQ cancels the consumer
            await asyncio.wait_for(cancelled.wait(), 20)
            await asyncio.wait_for(app.wait_connected(), 20)
            await app.publish("after", {})
            await asyncio.wait_for(handled.wait(), 10)
    (line,) = [record.getMessage() for record in caplog.records if "cancelled consuming" in record.getMessage()]
    assert line.startswith("RabbitMQ at amqp://") and f"consuming queue {app.queue!r}" in line
    assert "the queue was deleted" in line
    # RabbitMQ answered all along: no outage is reported.
    assert [record for record in caplog.records if "unreachable" in record.getMessage()] == []
