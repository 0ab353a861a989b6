"""NATSListener when things go wrong, and with several processes: the server restarts in the
middle of a stream of messages, a consumer process is killed in the middle of an event, two
processes share one durable consumer. Nothing may be lost."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, List

import pytest

from tests.broker_listeners import running
from tests.log_watch import LogWatch, watching_log
from tests.worker_processes import Workers
from tiny_listener import Param

from .conftest import NatsServer, Streams, nats, pending, pending_once_acked


@pytest.fixture
def lost_connection_log() -> Iterator[LogWatch]:
    with watching_log("tiny_listener.nats", "stopped (") as watch:
        yield watch


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    async with Workers("tests.nats._worker") as started:
        yield started


async def publish_jobs(url: str, prefix: str, numbers: range) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for n in numbers:
            await js.publish(f"{prefix}.job.{n}", b"{}")
    finally:
        await nc.close()


async def test_server_restart_in_the_middle_of_a_stream(
    private_server: NatsServer, lost_connection_log: LogWatch
) -> None:
    streams = Streams(private_server.url)
    p = streams.prefix
    app = streams.app(reconnect_backoff=0.05, ack_wait=2)
    handled: List[int] = []
    five_started = asyncio.Event()
    release_five = asyncio.Event()
    first_batch_in = asyncio.Event()
    everything = asyncio.Event()

    @app.on_event(p + ".job.{n:int}")
    async def job(n: Param) -> None:
        if n == 5 and not release_five.is_set():
            five_started.set()
            await release_five.wait()
        handled.append(n)
        if len(set(handled) - {5}) == 19 and five_started.is_set():
            first_batch_in.set()
        if set(handled) == set(range(40)) and handled.count(5) >= 2:
            everything.set()

    async with running(app):
        await publish_jobs(private_server.url, p, range(20))
        await asyncio.wait_for(first_batch_in.wait(), 20)
        await private_server.stop(kill=True)
        await asyncio.wait_for(lost_connection_log.wait(), 20)
        # Job 5 ends while the server is down: its ack is lost, so it must come again.
        release_five.set()
        await private_server.start()
        await asyncio.wait_for(app.wait_connected(), 30)
        await publish_jobs(private_server.url, p, range(20, 40))
        await asyncio.wait_for(everything.wait(), 30)
    assert set(handled) == set(range(40))
    assert handled.count(5) >= 2


async def test_message_of_a_killed_consumer_is_redelivered_to_another(
    streams: Streams, client: Any, workers: Workers
) -> None:
    p = streams.prefix
    stream = f"{p}_s"
    streams.streams += [stream, f"{stream}_dead"]
    worker = await workers.start("nats://127.0.0.1:4222", stream, p, "1", "block")
    await publish_jobs("nats://127.0.0.1:4222", p, range(1))
    assert await worker.next_line() == "started 0"
    await worker.kill()

    app = streams.app(stream=stream, ack_wait=1)
    got: List[Any] = []
    done = asyncio.Event()

    @app.on_event(p + ".job.{n:int}")
    async def job(n: Param) -> None:
        got.append(n)
        done.set()

    async with running(app):
        await asyncio.wait_for(done.wait(), 30)  # after the worker's ack_wait of 1 s
    assert got == [0]
    assert await pending(client, stream, "workers") == 0


async def test_two_processes_share_one_durable_consumer(streams: Streams, client: Any, workers: Workers) -> None:
    p = streams.prefix
    stream = f"{p}_s"
    streams.streams += [stream, f"{stream}_dead"]
    first = await workers.start("nats://127.0.0.1:4222", stream, p, "30", "work")
    second = await workers.start("nats://127.0.0.1:4222", stream, p, "30", "work")
    total = 400
    await publish_jobs("nats://127.0.0.1:4222", p, range(total))
    by_worker: List[List[int]] = [[], []]

    async def collect() -> None:
        # One reader per worker, reading on until every message was seen: a read cancelled as
        # soon as the other worker's line came first could be cancelled just after it got its
        # own line, which would then be lost to the count (seen on a loaded machine).
        all_seen = asyncio.Event()

        async def read(index: int, worker: Any) -> None:
            while True:
                line = await worker.next_line()
                assert line.startswith("handled "), line
                by_worker[index].append(int(line.split()[1]))
                if sum(map(len, by_worker)) >= total:
                    all_seen.set()

        readers = [asyncio.ensure_future(read(i, w)) for i, w in enumerate((first, second))]
        seen = asyncio.ensure_future(all_seen.wait())
        try:
            ended, _ = await asyncio.wait([seen, *readers], return_when=asyncio.FIRST_COMPLETED)
            for task in ended:
                task.result()  # a reader's error (a line that is not "handled", a timeout)
        finally:
            for task in (seen, *readers):
                task.cancel()
            await asyncio.gather(seen, *readers, return_exceptions=True)

    await asyncio.wait_for(collect(), 60)
    assert sorted(by_worker[0] + by_worker[1]) == list(range(total))  # each exactly once
    assert by_worker[0] and by_worker[1], "both processes got a share"
    assert await pending_once_acked(client, stream, "workers") == 0


async def test_keeps_retrying_until_the_server_is_up(tmp_path: Path) -> None:
    import shutil

    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    server = NatsServer(tmp_path / "jetstream")  # not started yet
    streams = Streams(server.url)
    app = streams.app(reconnect_backoff=0.05)
    handled = asyncio.Event()

    @app.on_event(streams.prefix + ".hello")
    async def hello() -> None:
        handled.set()

    with watching_log("tiny_listener.nats", "retrying in") as refused:
        task = asyncio.create_task(app.main())
        try:
            await asyncio.wait_for(refused.wait(), 20)
            await server.start()
            await asyncio.wait_for(app.wait_connected(), 30)
            await app.publish(f"{streams.prefix}.hello", {})
            await asyncio.wait_for(handled.wait(), 10)
        finally:
            app.stop()
            await asyncio.wait_for(task, 30)
            await server.stop(kill=True)


@pytest.mark.parametrize("deleted", ["consumer", "stream"])
async def test_a_consumer_or_stream_deleted_on_the_server_is_made_again_without_a_reconnection(
    streams: Streams, client: Any, deleted: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = streams.app(reconnect_backoff=0.05)
    app.fetch_timeout = 0.1  # a deleted consumer is found after idle_pulls_between_checks empty pulls
    seen: List[int] = []
    first = asyncio.Event()
    second = asyncio.Event()

    @app.on_event(streams.prefix + ".job.{n:int}")
    async def job(n: Param) -> None:
        seen.append(n)
        (first if n == 1 else second).set()

    with watching_log("tiny_listener.nats", "created it again") as made_again:
        async with running(app):
            await app.publish(f"{streams.prefix}.job.1", {})
            await asyncio.wait_for(first.wait(), 10)
            js = client.jetstream()
            if deleted == "consumer":
                await js.delete_consumer(app.stream, app.durable)
            else:
                await js.delete_stream(app.stream)
            await asyncio.wait_for(made_again.wait(), 20)
            await publish_jobs("nats://127.0.0.1:4222", streams.prefix, range(2, 3))
            await asyncio.wait_for(second.wait(), 20)
    # The new consumer starts from the beginning of the stream: job 1 may come again.
    assert set(seen) == {1, 2}
    (line,) = [record.getMessage() for record in caplog.records if "created it again" in record.getMessage()]
    assert line.startswith(f"consumer {app.durable!r} of stream {app.stream!r} is gone from NATS at nats://")
    # The server answered all along: no outage is reported.
    assert [record for record in caplog.records if "unreachable" in record.getMessage()] == []


async def test_shutdown_completes_while_the_server_is_away(
    private_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    streams = Streams(private_server.url)
    app = streams.app(reconnect_backoff=0.05)

    @app.on_event(streams.prefix + ".hello")
    async def hello() -> None:
        pass

    with watching_log("tiny_listener.nats", "is unreachable") as unreachable:
        task = asyncio.create_task(app.main())
        await asyncio.wait_for(app.wait_connected(), 20)
        await private_server.stop(kill=True)
        await asyncio.wait_for(unreachable.wait(), 20)
        app.stop()
        await asyncio.wait_for(task, 20)  # the reconnect loop gives up instead of holding the shutdown
    assert [record.getMessage() for record in caplog.records if "did not close" in record.getMessage()] == []
