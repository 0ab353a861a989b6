"""Graceful shutdown and memory over loopback."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import tracemalloc
import weakref
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.conftest import free_port
from tiny_listener.http import HTTPListener, Request

from .client import TIMEOUT, Client, at_eof, connect, read_reply, serving


def make_app(state: Dict[str, Any], shutdown_timeout: float = 10.0) -> HTTPListener:
    app = HTTPListener(shutdown_timeout=shutdown_timeout)

    @app.on_event("GET:/hello")
    async def hello(request: Request) -> str:
        state["last_request"] = weakref.ref(request)
        return "hello"

    @app.on_event("GET:/slow")
    async def slow() -> str:
        state["slow_started"].set()
        await state["gate"].wait()
        return "finished"

    return app


async def test_shutdown_stops_accepting_closes_idle_connections_and_finishes_in_flight_requests() -> None:
    state: Dict[str, Any] = {"slow_started": asyncio.Event(), "gate": asyncio.Event()}
    app = make_app(state)
    async with serving(app) as (_, main_task), connect(app) as busy, connect(app) as idle:
        assert (await idle.request("GET", "/hello")).status == 200
        await busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await state["slow_started"].wait()
        port = app.port
        app.stop()
        assert await at_eof(idle.reader)  # the idle keep-alive connection is closed at once
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)  # and nothing new is accepted
        assert not main_task.done()  # the in-flight request holds the shutdown
        state["gate"].set()
        reply = await read_reply(busy.reader)
        assert (reply.status, reply.body, reply.headers["connection"]) == (200, b"finished", "close")
        assert await at_eof(busy.reader)
        await asyncio.wait_for(main_task, 10)
    assert app.connections == 0 and app.ctxs == {}


async def test_a_request_still_running_at_the_deadline_is_cancelled_with_503() -> None:
    state: Dict[str, Any] = {"slow_started": asyncio.Event(), "gate": asyncio.Event()}
    app = make_app(state, shutdown_timeout=0.2)
    async with serving(app) as (_, main_task), connect(app) as client:
        await client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await state["slow_started"].wait()
        app.stop()
        reply = await read_reply(client.reader)
        assert (reply.status, reply.headers["connection"]) == (503, "close")
        assert await at_eof(client.reader)
        await asyncio.wait_for(main_task, 10)


async def test_no_request_outlives_its_response() -> None:
    state: Dict[str, Any] = {}
    async with serving(make_app(state)) as (app, _), connect(app) as client:
        for _ in range(10):
            assert (await client.request("GET", "/hello")).body == b"hello"
        gc.collect()
        assert state["last_request"]() is None
        assert app.ctxs == {}


async def test_a_handler_swallowing_its_cancellation_gets_503_at_the_deadline_not_a_bare_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    stubborn_tasks: list[asyncio.Task[Any]] = []
    let_go = False
    app = HTTPListener(shutdown_timeout=0.2)
    app.cancel_timeout = 0.2

    @app.on_event("GET:/stubborn")
    async def stubborn() -> str:
        stubborn_tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        started.set()
        while not let_go:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # the bug under test: a handler that does not let go
        return "let go"

    async with serving(app) as (_, main_task), connect(app) as client:
        await client.send(b"GET /stubborn HTTP/1.1\r\nHost: t\r\n\r\n")
        await started.wait()
        app.stop()
        reply = await read_reply(client.reader)
        assert (reply.status, reply.headers["connection"]) == (503, "close")
        assert await at_eof(client.reader)
        await asyncio.wait_for(main_task, 10)  # shutdown ends without waiting for the handler
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("left behind: event 'GET:/stubborn' in handler stubborn" in w for w in warnings)
    let_go = True  # this test's loop is pytest's: end the stubborn task for it
    stubborn_tasks[0].cancel()
    await asyncio.wait(stubborn_tasks)


STUBBORN_APP = """
import asyncio
import sys

from tiny_listener.http import HTTPListener

app = HTTPListener(shutdown_timeout=0.5)


@app.on_event("GET:/stubborn")
async def stubborn():
    print("handler started", file=sys.stderr, flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
"""


async def test_the_cli_stops_within_both_timeouts_with_a_stubborn_handler_and_no_asyncio_complaint(
    tmp_path: Path,
) -> None:
    (tmp_path / "stubborn_app.py").write_text(STUBBORN_APP)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiny_listener", "--app-dir", str(tmp_path), "--port", str(port),
        "stubborn_app:app", stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        while f"http://127.0.0.1:{port}".encode() not in await asyncio.wait_for(proc.stderr.readline(), TIMEOUT):
            pass
        client = Client(*await asyncio.open_connection("127.0.0.1", port))
        await client.send(b"GET /stubborn HTTP/1.1\r\nHost: t\r\n\r\n")
        while b"handler started" not in await asyncio.wait_for(proc.stderr.readline(), TIMEOUT):
            pass
        proc.send_signal(signal.SIGTERM)
        reply = await read_reply(client.reader)
        assert (reply.status, reply.headers["connection"]) == (503, "close")
        # shutdown_timeout (0.5 s) + cancel_timeout (5 s by default), where it took + 30 s + 5 s.
        stderr = (await asyncio.wait_for(proc.stderr.read(), 0.5 + 5 + TIMEOUT)).decode()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        await client.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "left behind: event 'GET:/stubborn' in handler stubborn" in stderr
    assert "Task was destroyed" not in stderr and "Exception ignored" not in stderr and "Traceback" not in stderr


async def test_distinct_long_paths_leave_nothing_behind() -> None:
    app = HTTPListener()

    @app.on_event("GET:/{anything:path}")
    async def anything() -> str:
        return "ok"

    filler = "p" * 15_000
    tracemalloc.start()
    try:
        async with serving(app), connect(app) as client:
            assert (await client.request("GET", "/warm-up")).body == b"ok"
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(300):
                assert (await client.request("GET", f"/{i}/{filler}")).body == b"ok"
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1024 * 1024  # 9 MB if the route cache kept each path and its params
