"""Hostile and careless clients of the TCP listener, on loopback: clients that never read their
replies, that leave with frames unhandled, handlers that never let go at shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import List, Set, Tuple

import pytest

from tests.conftest import free_port
from tiny_listener import Param
from tiny_listener.tcp import TCPContext, TCPListener

from ..log_watch import watching_log
from .test_listener import connect, read_all, running

REPLY = 512 * 1024


async def test_a_client_that_never_reads_its_replies_stops_being_read() -> None:
    # Replies of 512 KiB: the kernel's socket buffers (a few MiB on loopback) hold a handful.
    app = TCPListener(max_frame_size=REPLY)
    handled = 0

    @app.on_event()
    async def big_reply(ctx: TCPContext) -> None:
        nonlocal handled
        handled += 1
        ctx.send(b"r" * REPLY)  # without waiting: the transport must push back

    async with running(app):
        reader, writer = await connect(app)
        writer.write(b"give\n" * 200)  # 100 MiB of replies if they were all produced
        # Give a misbehaving server time to run ahead while the client reads nothing.
        await asyncio.sleep(0.5)
        handled_while_not_reading = handled
        assert handled_while_not_reading < 60  # socket buffers and the 64 KiB high-water mark
        received = 0
        while received < 200 * (REPLY + 1):
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk
            received += len(chunk)
        assert handled == 200 and received == 200 * (REPLY + 1)  # nothing was lost
        writer.close()


async def test_replies_piling_up_past_max_write_buffer_close_that_connection_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = TCPListener(max_write_buffer=256 * 1024)
    listeners: Set[TCPContext] = set()

    @app.on_event("listen")
    async def subscribe(ctx: TCPContext) -> None:
        listeners.add(ctx)
        ctx.send("subscribed")

    @app.on_event("broadcast")
    async def broadcast(ctx: TCPContext) -> None:
        for other in list(listeners):
            if other.is_alive:
                other.send(b"n" * 60_000)  # 60 KB each, without waiting, to every listener
        ctx.send("sent")

    async with running(app):
        deaf_reader, deaf_writer = await connect(app)
        deaf_writer.write(b"listen\n")
        assert await asyncio.wait_for(deaf_reader.readline(), 10) == b"subscribed\n"
        talker_reader, talker_writer = await connect(app)
        for _ in range(300):  # 18 MB for the deaf client, who reads nothing
            talker_writer.write(b"broadcast\n")
            assert await asyncio.wait_for(talker_reader.readline(), 10) == b"sent\n"
        talker_writer.close()
        deaf_writer.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "of replies it does not read (max_write_buffer=262144)" in warnings[0]


async def test_frames_of_a_client_that_left_are_dropped_with_one_line_not_run(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.tcp")
    app = TCPListener()
    handled: List[str] = []
    first_started = asyncio.Event()
    release = asyncio.Event()

    @app.on_event("req {n}")
    async def request(ctx: TCPContext) -> None:
        handled.append("x")
        first_started.set()
        await release.wait()
        ctx.send("answer")

    async with running(app):
        _, writer = await connect(app)
        writer.write(b"".join(b"req %d\n" % i for i in range(20_000)))  # ~200 KB of requests
        await writer.drain()
        await asyncio.wait_for(first_started.wait(), 10)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()  # gone, with a reset: nobody will read the answers
        await asyncio.sleep(0.1)  # for the reset to reach the server (nothing to await for it)
        with watching_log("tiny_listener.tcp", "received frame(s) dropped") as dropping:
            release.set()
            await asyncio.wait_for(dropping.wait(), 10)
    assert len(handled) <= 3  # the one running, and at most two before the reset is seen
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "received frame(s) dropped" in dropped[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_that_reads_none_of_its_replies_is_closed_after_idle_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.tcp")
    app = TCPListener(idle_timeout=0.3, max_frame_size=REPLY)

    @app.on_event()
    async def big_reply(ctx: TCPContext) -> None:
        ctx.send(b"r" * REPLY)

    async with running(app):
        with watching_log("tiny_listener.tcp", "read none of its replies") as closing:
            _, writer = await connect(app)
            writer.write(b"give\n" * 100)
            await asyncio.wait_for(closing.wait(), 10)
        writer.close()
    assert "read none of its replies for 0.3s" in caplog.text


async def test_a_handler_that_never_lets_go_does_not_keep_its_connection_open_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "tiny_listener.tcp")
    app = TCPListener(shutdown_timeout=0.2)
    app.cancel_timeout = 0.2
    started = asyncio.Event()
    stubborn_tasks: List[asyncio.Task[object]] = []
    let_go = False

    @app.on_event("stubborn")
    async def stubborn(ctx: TCPContext) -> None:
        ctx.send("working on it")
        stubborn_tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        started.set()
        while not let_go:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # the bug under test

    try:
        async with running(app) as main_task:
            reader, writer = await connect(app)
            writer.write(b"stubborn\n")
            await asyncio.wait_for(started.wait(), 10)
            await app.graceful_shutdown()
            assert await read_all(reader) == b"working on it\n"  # what was sent, then a clean close
            await asyncio.wait_for(main_task, 10)
            writer.close()
    finally:
        let_go = True  # this test's loop is pytest's: end the stubborn task for it
        for task in stubborn_tasks:
            task.cancel()
        await asyncio.wait(stubborn_tasks)
    assert app.ctxs == {}
    assert "still handled at the shutdown deadline" in caplog.text
    # Abandoned at the deadline, then its worker cancelled: closed once, said once.
    assert [record.getMessage() for record in caplog.records if record.getMessage().endswith(" closed")] == [
        f"connection {writer.get_extra_info('sockname')[0]}:{writer.get_extra_info('sockname')[1]} closed"
    ]


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_memory_held_per_connection_is_bounded_and_released_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "tiny_listener.tcp")
    app = TCPListener()

    @app.on_event()
    async def answer(ctx: TCPContext) -> None:
        ctx.send("ok")

    line = b"x" * 60_000 + b"\n"
    connections, frames = 10, 130
    tracemalloc.start()
    try:
        async with running(app):
            baseline = traced()
            streams = [await connect(app) for _ in range(connections)]
            for _, writer in streams:
                for i in range(frames):
                    writer.write(b"%d:" % i + line)
            for reader, _ in streams:
                for _ in range(frames):
                    assert await asyncio.wait_for(reader.readline(), 10) == b"ok\n"
            # 10 x 130 frames of 60 KB: 150 MB if each connection's history kept its frames.
            held_open = traced() - baseline
            with watching_log("tiny_listener.tcp", "closed") as closed:
                for _, writer in streams:
                    writer.close()
                await asyncio.wait_for(closed.wait(connections), 10)
            held_after = traced() - baseline
    finally:
        tracemalloc.stop()
    assert held_open < 8 * 1024 * 1024
    assert held_after < 512 * 1024


FD_LIMITED_APP = """
import resource

from tiny_listener import Event
from tiny_listener.tcp import TCPListener

# Few file descriptors: the server runs out of them with a few dozen clients.
resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

app = TCPListener()


@app.on_event()
async def echo(event: Event) -> None:
    event.ctx.send(event.path)
"""


async def test_out_of_file_descriptors_the_server_backs_off_logs_once_and_serves_the_next_client_when_one_closes(
    tmp_path: Path,
) -> None:
    (tmp_path / "fd_limited_tcp_app.py").write_text(FD_LIMITED_APP)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiny_listener", "--app-dir", str(tmp_path), "--port", str(port),
        "fd_limited_tcp_app:app", stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    streams: List[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        while f"127.0.0.1:{port}".encode() not in await asyncio.wait_for(proc.stderr.readline(), 10):
            pass
        for n in range(60):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # queued by the kernel
            writer.write(b"hello %d\n" % n)
            streams.append((reader, writer))
        replies = {asyncio.create_task(reader.readline()): writer for reader, writer in streams}
        # The server's descriptors run out after a few dozen: those clients are answered at once.
        served, waiting = await asyncio.wait(replies, timeout=1.5)
        assert served and waiting
        for task in list(served)[:5]:
            replies[task].close()
        more, _ = await asyncio.wait(waiting, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert more  # a freed descriptor serves a waiting client
        for _, writer in streams:
            writer.close()
        proc.send_signal(signal.SIGINT)
        stderr = (await asyncio.wait_for(proc.stderr.read(), 20)).decode()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert stderr.count("cannot accept connections: Too many open files") == 1  # not one per attempt
    assert "out of system resource" not in stderr and "Traceback" not in stderr


async def test_a_busy_connection_queues_a_bounded_amount_of_what_its_client_sends() -> None:
    app = TCPListener()
    busy = asyncio.Event()
    release = asyncio.Event()

    @app.on_event("{n:int}:{rest:path}")
    async def slow(ctx: TCPContext, n: Param) -> None:
        if n == 50:  # after 50 frames handled at full speed
            busy.set()
            await release.wait()
        ctx.send("ok")

    flood = b"".join(b"%d:%s\n" % (i, b"x" * 60_000) for i in range(300))  # 18 MB of 60 KB frames
    loop = asyncio.get_running_loop()
    tracemalloc.start()
    try:
        async with running(app):
            sock = socket.create_connection((app.host, app.port))
            sock.setblocking(False)
            baseline = traced()
            sending = asyncio.create_task(loop.sock_sendall(sock, flood))  # sent from `flood`, no copy
            await asyncio.wait_for(busy.wait(), 10)
            await asyncio.sleep(0.3)  # give a server that does not stop reading time to take it all
            held = traced() - baseline
            release.set()
            await asyncio.wait_for(sending, 10)
            sock.close()
    finally:
        tracemalloc.stop()
    assert held < 2 * 1024 * 1024  # 64 KiB of queued frames, a read, the frames being handled
