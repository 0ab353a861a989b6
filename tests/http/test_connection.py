"""Connection handling over loopback: keep-alive, pipelining, close, HTTP/1.0, bodies, 100-continue."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Dict

from tiny_listener import Param
from tiny_listener.http import HTTPListener, Request

from .client import at_eof, connect, read_reply, serving


def make_app(gates: Dict[str, asyncio.Event] | None = None) -> HTTPListener:
    app = HTTPListener()
    gates = gates if gates is not None else {}

    @app.on_event("GET:/wait/{name}")
    async def wait(name: Param) -> str:
        # Pipelining test: the first request finishes last unless responses are kept in order.
        if name in gates:
            await gates[name].wait()
        return name

    @app.on_event("POST:/echo")
    async def echo(request: Request) -> bytes:
        if "echo-started" in gates:
            gates["echo-started"].set()
        return await request.body()

    @app.on_event("POST:/ignore-body")
    async def ignore_body() -> str:
        return "ignored"

    @app.on_event("GET:/hello")
    async def hello() -> str:
        return "hello"

    return app


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        for i in range(5):
            assert (await client.request("GET", f"/wait/r{i}")).body == f"r{i}".encode()
        assert app.connections == 1


async def test_pipelined_requests_are_answered_in_order() -> None:
    gates: Dict[str, asyncio.Event] = {"slow": asyncio.Event()}
    async with serving(make_app(gates)) as (app, _), connect(app) as client:
        await client.send(
            b"GET /wait/slow HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /wait/fast HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"
        )
        read_first = asyncio.ensure_future(read_reply(client.reader))
        gates["slow"].set()
        assert (await read_first).body == b"slow"
        assert (await read_reply(client.reader)).body == b"fast"
        assert (await read_reply(client.reader)).body == b"body"


async def test_connection_close_is_honoured() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/hello", headers="Connection: close\r\n")
        assert reply.headers["connection"] == "close" and reply.body == b"hello"
        assert await at_eof(client.reader)


async def test_http10_gets_an_answer_then_a_close() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        await client.send(b"GET /hello HTTP/1.0\r\n\r\n")
        reply = await read_reply(client.reader)
        assert (reply.status, reply.body, reply.headers["connection"]) == (200, b"hello", "close")
        assert await at_eof(client.reader)


async def test_a_body_sent_after_the_handler_started_is_received() -> None:
    gates = {"echo-started": asyncio.Event()}
    async with serving(make_app(gates)) as (app, _), connect(app) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello")
        await gates["echo-started"].wait()
        await client.send(b" world")
        assert (await read_reply(client.reader)).body == b"hello world"


async def test_chunked_request_bodies_are_received() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"
        )
        assert (await read_reply(client.reader)).body == b"hello!"


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = await read_reply(client.reader)
        assert interim.status == 100
        await client.send(b"data")
        assert (await read_reply(client.reader)).body == b"data"
        assert (await client.request("GET", "/hello")).body == b"hello"


async def test_expect_100_continue_unanswered_when_the_body_is_not_read_closes_the_connection() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        await client.send(b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reply = await read_reply(client.reader)
        assert (reply.status, reply.body) == (200, b"ignored")
        assert await at_eof(client.reader)


async def test_an_unread_body_is_skipped_and_the_connection_reused() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("POST", "/ignore-body", body=b"x" * 100_000)
        assert reply.body == b"ignored"
        assert (await client.request("GET", "/hello")).body == b"hello"


async def test_requests_on_many_connections_at_once() -> None:
    async with serving(make_app()) as (app, _):

        async def one(i: int) -> Any:
            async with connect(app) as client:
                return (await client.request("GET", f"/wait/c{i}")).body

        assert await asyncio.gather(*(one(i) for i in range(50))) == [f"c{i}".encode() for i in range(50)]


REQUEST_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("request_mark", default="unset")


async def test_a_pipelined_request_inherits_no_context_variable_from_the_one_before() -> None:
    app = HTTPListener()

    @app.on_event("GET:/mark/{name}")
    async def mark(name: Param) -> str:
        seen = REQUEST_MARK.get()
        REQUEST_MARK.set(name)  # as a tracing middleware would set a trace id
        return seen

    async with serving(app), connect(app) as client:
        await client.send(b"GET /mark/a HTTP/1.1\r\nHost: t\r\n\r\nGET /mark/b HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await read_reply(client.reader)).body == b"unset"
        assert (await read_reply(client.reader)).body == b"unset"


async def test_a_client_that_shuts_down_its_side_after_the_request_still_gets_the_answer() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        await client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        client.writer.write_eof()
        reply = await read_reply(client.reader)
        assert reply.body == b"hello"
        assert await at_eof(client.reader)
