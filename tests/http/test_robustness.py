"""Hostile and unlucky clients over loopback: malformed requests, smuggling, limits, slow or
vanishing clients, and flow control."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Dict, List

import pytest

from tiny_listener import Event, Param
from tiny_listener.http import HTTPListener, Limits, Request, RequestAborted, StreamingResponse

from .client import Client, at_eof, connect, read_reply, serving

CHUNK = 64 * 1024


def make_app(limits: Limits | None = None, state: Dict[str, Any] | None = None) -> HTTPListener:
    app = HTTPListener(limits=limits)
    state = state if state is not None else {}
    state.setdefault("smuggled", 0)

    @app.on_event("GET:/hello")
    async def hello() -> str:
        return "hello"

    @app.on_event("GET:/admin")
    async def admin() -> str:
        state["smuggled"] += 1
        return "admin"

    @app.on_event("POST:/echo")
    async def echo(request: Request) -> str:
        return str(len(await request.body()))

    @app.on_event("POST:/wait-for-body")
    async def wait_for_body(request: Request) -> str:
        state["reading"].set()
        try:
            return str(len(await request.body()))
        except RequestAborted:
            state["aborted"] = True
            raise
        finally:
            state["ended"].set()

    @app.on_event("POST:/slow-reader")
    async def slow_reader(request: Request) -> str:
        await state["go"].wait()
        state["buffered"] = request.buffered_body_bytes
        return str(len(await request.body()))

    @app.on_event("GET:/endless")
    async def endless() -> StreamingResponse:
        async def forever() -> AsyncIterator[bytes]:
            try:
                while True:
                    state["produced"] = state.get("produced", 0) + 1
                    yield b"x" * CHUNK
            finally:
                state["closed"].set()

        return StreamingResponse(forever())

    @app.on_event("GET:/big")
    async def big() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(state["count"]):
                state["produced"] = state.get("produced", 0) + 1
                yield b"y" * CHUNK

        return StreamingResponse(chunks())

    return app


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /hello HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", 400),
        (b"GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: compress\r\n\r\n", 501),
    ],
)
async def test_malformed_requests_get_an_error_then_a_close_and_serving_goes_on(
    request_bytes: bytes, status: int
) -> None:
    async with serving(make_app()) as (app, _):
        async with connect(app) as bad:
            await bad.send(request_bytes)
            reply = await read_reply(bad.reader)
            assert reply.status == status and reply.headers["connection"] == "close"
            assert await at_eof(bad.reader)
        async with connect(app) as good:
            assert (await good.request("GET", "/hello")).body == b"hello"


BAD_REQUESTS = [
    pytest.param(b"NOT A REQUEST\r\n\r\n", 400, id="400"),
    pytest.param(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, id="431"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413, id="413"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: compress\r\n\r\n", 501, id="501"),
]


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-an-answer", "pipelined"])
@pytest.mark.parametrize(("request_bytes", "status"), BAD_REQUESTS)
async def test_a_bad_request_later_on_a_keep_alive_connection_gets_its_answer_too(
    request_bytes: bytes, status: int, pipelined: bool
) -> None:
    good = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
    async with serving(make_app()) as (app, _), connect(app) as client:
        if pipelined:
            await client.send(good + good + request_bytes)
        else:
            await client.send(good)
            assert (await read_reply(client.reader)).body == b"hello"
            await client.send(good)
            assert (await read_reply(client.reader)).body == b"hello"
            await client.send(request_bytes)
        if pipelined:
            assert [(await read_reply(client.reader)).body for _ in range(2)] == [b"hello", b"hello"]
        reply = await read_reply(client.reader)
        assert (reply.status, reply.headers["connection"]) == (status, "close")
        assert await at_eof(client.reader)


async def test_content_length_plus_transfer_encoding_never_runs_a_smuggled_request() -> None:
    state: Dict[str, Any] = {}
    async with serving(make_app(state=state)) as (app, _), connect(app) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 41\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert (await read_reply(client.reader)).status == 400
        assert await at_eof(client.reader)
    assert state["smuggled"] == 0


async def test_headers_over_the_limit_get_431() -> None:
    async with serving(make_app(Limits(max_header_bytes=4096))) as (app, _), connect(app) as client:
        await client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        assert (await read_reply(client.reader)).status == 431


async def test_bodies_over_the_limit_get_413_for_both_framings() -> None:
    async with serving(make_app(Limits(max_body_bytes=1000))) as (app, _):
        async with connect(app) as client:
            reply = await client.request("POST", "/echo", body=b"z" * 1001)
            assert reply.status == 413
        async with connect(app) as client:
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            await client.send(b"400\r\n" + b"z" * 1024 + b"\r\n")
            assert (await read_reply(client.reader)).status == 413
            assert await at_eof(client.reader)
        async with connect(app) as client:
            assert (await client.request("POST", "/echo", body=b"z" * 1000)).body == b"1000"


async def test_idle_keep_alive_connections_are_closed() -> None:
    async with serving(make_app(Limits(keep_alive_timeout=0.2))) as (app, _), connect(app) as client:
        assert (await client.request("GET", "/hello")).status == 200
        assert await at_eof(client.reader)


async def test_slowloris_gets_408_and_does_not_block_other_clients() -> None:
    limits = Limits(header_timeout=0.5, keep_alive_timeout=0.5)
    async with serving(make_app(limits)) as (app, _), connect(app) as slow:
        await slow.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        await slow.send(b"X-Trickle: 1\r\n")
        async with connect(app) as other:
            assert (await other.request("GET", "/hello")).body == b"hello"
        await slow.send(b"X-Trickle: 2\r\n")  # trickling does not extend the deadline
        reply = await read_reply(slow.reader)
        assert reply.status == 408
        assert await at_eof(slow.reader)


async def test_a_client_vanishing_mid_request_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    state: Dict[str, Any] = {"reading": asyncio.Event(), "ended": asyncio.Event()}
    async with serving(make_app(state=state)) as (app, _):
        async with connect(app) as client:
            await client.send(b"POST /wait-for-body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
            await state["reading"].wait()
        await state["ended"].wait()
        assert state["aborted"]
        async with connect(app) as client:
            assert (await client.request("GET", "/hello")).body == b"hello"
        # Both events ended (the second one's context is released before its answer is read).
        assert app.ctxs == {}
    # The handler's RequestAborted is not reported as a bug.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_vanishing_mid_response_stops_the_stream() -> None:
    state: Dict[str, Any] = {"closed": asyncio.Event()}
    async with serving(make_app(state=state)) as (app, _):
        async with connect(app) as client:
            await client.send(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
            await client.reader.readexactly(CHUNK)
        await asyncio.wait_for(state["closed"].wait(), 10)
        async with connect(app) as client:
            assert (await client.request("GET", "/hello")).body == b"hello"


async def test_a_slow_reader_pauses_the_handler_instead_of_growing_memory() -> None:
    total_chunks = 4096  # 256 MiB if it were all buffered
    state: Dict[str, Any] = {"count": total_chunks}
    async with serving(make_app(state=state)) as (app, _), connect(app) as client:
        await client.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        # Give a misbehaving server time to run ahead while the client reads nothing.
        await asyncio.sleep(0.5)
        produced_while_not_reading = state["produced"]
        assert produced_while_not_reading < 256  # under 16 MiB: socket buffers, not the whole body
        reply = await read_reply(client.reader)
        assert len(reply.body) == total_chunks * CHUNK  # and nothing was lost


async def test_a_handler_not_reading_its_body_stops_the_socket_reads() -> None:
    limits = Limits(max_body_bytes=64 * 1024 * 1024, max_body_buffer=64 * 1024)
    state: Dict[str, Any] = {"go": asyncio.Event()}
    body_size = 16 * 1024 * 1024
    async with serving(make_app(limits, state)) as (app, _), connect(app) as client:
        head = f"POST /slow-reader HTTP/1.1\r\nHost: t\r\nContent-Length: {body_size}\r\n\r\n".encode()
        client.writer.write(head + b"b" * body_size)  # drained below, once the handler reads
        await asyncio.sleep(0.5)  # time for a misbehaving server to buffer everything
        state["go"].set()
        await client.writer.drain()
        reply = await read_reply(client.reader)
        assert reply.body == str(body_size).encode()
        # The server held at most its buffer limit plus one socket read, not the 16 MiB.
        assert state["buffered"] <= limits.max_body_buffer + 256 * 1024


async def test_contexts_are_released_after_many_requests() -> None:
    async with serving(make_app()) as (app, _):
        async with connect(app) as client:
            pipelined = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n" * 200
            await client.send(pipelined)
            replies: List[bytes] = [(await read_reply(client.reader)).body for _ in range(200)]
            assert replies == [b"hello"] * 200
            for _ in range(100):
                await client.request("POST", "/echo", body=b"123")
            await client.request("GET", "/nowhere")
        assert app.ctxs == {}


class OwnBaseException(BaseException):
    pass


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit, GeneratorExit, OwnBaseException])
async def test_a_handler_raising_a_base_exception_gets_500_and_the_server_serves_on(
    error_type: type, caplog: pytest.LogCaptureFixture
) -> None:
    app = HTTPListener()
    offered: List[BaseException] = []
    release = asyncio.Event()

    @app.on_event("GET:/fatal")
    async def fatal() -> None:
        raise error_type()

    @app.on_event("GET:/slow/{n}")
    async def slow(n: Param) -> str:
        await release.wait()
        return str(n)

    @app.on_error(BaseException)
    async def seen(event: Event) -> None:
        assert event.error is not None
        offered.append(event.error)

    async with serving(app) as (_, main_task):
        in_flight = [Client(*await asyncio.open_connection("127.0.0.1", app.port)) for _ in range(5)]
        for i, client in enumerate(in_flight):
            await client.send(f"GET /slow/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        async with connect(app) as client:
            reply = await client.request("GET", "/fatal")
            assert (reply.status, reply.body) == (500, b"Internal Server Error")
        release.set()
        for i, client in enumerate(in_flight):
            assert (await read_reply(client.reader)).body == str(i).encode()
            await client.close()
        assert not main_task.done()
    assert [type(error) for error in offered] == [error_type]
