"""Graceful shutdown and memory over loopback."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any, Dict

import pytest

from tiny_listener.http import HTTPListener, Request

from .client import at_eof, connect, read_reply, serving


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
