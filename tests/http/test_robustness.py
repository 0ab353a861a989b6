"""Hostile and unlucky clients over loopback: malformed requests, smuggling, limits, slow or
vanishing clients, and flow control."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List

import pytest

from tests.conftest import free_port
from tiny_listener import Event, Param
from tiny_listener.http import HTTPListener, Limits, Request, RequestAborted, StreamingResponse

from .client import TIMEOUT, Client, Reply, at_eof, connect, read_reply, serving

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


async def test_a_request_body_making_no_progress_gets_408_and_a_close() -> None:
    async with serving(make_app(Limits(body_timeout=0.3))) as (app, _), connect(app) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
        reply = await read_reply(client.reader)
        assert (reply.status, reply.headers["connection"]) == (408, "close")
        assert reply.body == b"no request body bytes for 0.3s"
        assert await at_eof(client.reader)
        async with connect(app) as other:
            assert (await other.request("GET", "/hello")).body == b"hello"


async def test_a_request_body_trickling_in_slower_than_the_minimum_rate_gets_408() -> None:
    # One byte every 20 ms always makes progress, at 50 bytes/s: under the 1,000 bytes/s asked.
    limits = Limits(body_timeout=0.3, min_body_rate=1000)
    async with serving(make_app(limits)) as (app, _), connect(app) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")

        async def trickle() -> None:
            while True:
                client.writer.write(b"x")
                await asyncio.sleep(0.02)  # the attacker's pace

        trickling = asyncio.create_task(trickle())
        try:
            reply = await read_reply(client.reader)
        finally:
            trickling.cancel()
        assert (reply.status, reply.body) == (408, b"request body slower than 1000 bytes/s")


async def test_the_body_clock_stops_while_the_handler_is_slow_to_read_or_the_client_awaits_100_continue() -> None:
    app = HTTPListener(limits=Limits(body_timeout=0.2, max_body_buffer=64 * 1024))

    @app.on_event("POST:/late-reader")
    async def late_reader(request: Request) -> str:
        await asyncio.sleep(0.6)  # busy elsewhere for three body timeouts before reading
        return str(len(await request.body()))

    async with serving(app), connect(app) as client:
        # 1 MiB at once: the server buffers 64 KiB and stops reading until the handler reads.
        reply = await client.request("POST", "/late-reader", body=b"b" * 1024 * 1024)
        assert (reply.status, reply.body) == (200, b"1048576")
        # A client waiting for 100 Continue is not late either.
        await client.send(
            b"POST /late-reader HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await client.send(b"hello")
        assert (await read_reply(client.reader)).body == b"5"


async def test_past_max_connections_clients_wait_and_the_next_is_served_when_one_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "tiny_listener")
    async with serving(make_app(Limits(max_connections=2))) as (app, _):
        first = Client(*await asyncio.open_connection("127.0.0.1", app.port))
        second = Client(*await asyncio.open_connection("127.0.0.1", app.port))
        for client in (first, second):
            assert (await client.request("GET", "/hello")).body == b"hello"
        waiting = Client(*await asyncio.open_connection("127.0.0.1", app.port))  # in the backlog
        await waiting.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = asyncio.create_task(read_reply(waiting.reader))
        # A server that does not hold the limit would answer it at once.
        done, _ = await asyncio.wait([answer], timeout=0.3)
        assert not done
        await first.close()
        assert (await answer).body == b"hello"  # accepted as soon as a connection closed
        await second.close()
        await waiting.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "tiny_listener"]
    reached = "HTTP: max_connections=2 reached: new connections wait (2 open)"
    assert [m for m in messages if "max_connections" in m] == [reached]
    assert any(m.startswith("HTTP: accepting connections again after") for m in messages)


FD_LIMITED_APP = """
import resource

from tiny_listener.http import HTTPListener

# Few file descriptors: the server runs out of them with a few dozen clients.
resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

app = HTTPListener()


@app.on_event("GET:/hello")
async def hello():
    return "hello"
"""


async def test_out_of_file_descriptors_the_server_backs_off_logs_once_and_serves_the_next_client_when_one_closes(
    tmp_path: Path,
) -> None:
    (tmp_path / "fd_limited_app.py").write_text(FD_LIMITED_APP)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiny_listener", "--app-dir", str(tmp_path), "--port", str(port),
        "fd_limited_app:app", stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    clients: List[Client] = []
    replies: Dict[asyncio.Task[Reply], Client] = {}
    try:
        while f"http://127.0.0.1:{port}".encode() not in await asyncio.wait_for(proc.stderr.readline(), TIMEOUT):
            pass
        for _ in range(60):
            clients.append(Client(*await asyncio.open_connection("127.0.0.1", port)))  # queued by the kernel
        for client in clients:
            await client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        replies.update({asyncio.create_task(read_reply(client.reader)): client for client in clients})
        # The server's descriptors run out after a few dozen: those clients are answered at once.
        served, waiting = await asyncio.wait(replies, timeout=1.5)
        assert served and waiting
        for task in list(served)[:5]:
            await replies[task].close()
        more, _ = await asyncio.wait(waiting, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        assert more  # a freed descriptor serves a waiting client
        for client in clients:
            await client.close()
        proc.send_signal(signal.SIGINT)
        stderr = (await asyncio.wait_for(proc.stderr.read(), TIMEOUT)).decode()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        for task in replies:  # the replies still awaited when the clients closed
            task.cancel()
        await asyncio.gather(*replies, return_exceptions=True)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert stderr.count("cannot accept connections: Too many open files") == 1  # not one per attempt
    assert "accepting connections again after" in stderr
    assert "out of system resource" not in stderr and "Traceback" not in stderr
