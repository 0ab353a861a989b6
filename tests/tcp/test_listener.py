"""The TCP listener end to end, on loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, List, Tuple

import pytest

from tiny_listener import Data, Event, Listener, Param
from tiny_listener.codecs import JsonCodec
from tiny_listener.tcp import LengthPrefixFramer, TCPContext, TCPListener

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Stream = Tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def running(app: TCPListener) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app`` on a free port; on exit shut it down gracefully and wait for it."""
    app.port = 0
    task = asyncio.create_task(app.main())
    try:
        await asyncio.wait_for(app.wait_listening(), 10)
        yield task
    finally:
        await app.graceful_shutdown()
        await task


async def connect(app: TCPListener) -> Stream:
    return await asyncio.open_connection(app.host, app.port)


async def ask(stream: Stream, line: bytes) -> bytes:
    reader, writer = stream
    writer.write(line + b"\n")
    return await asyncio.wait_for(reader.readline(), 10)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_chat_bot_example_of_the_1_2_docs() -> None:
    app = load_example("tcp_chat").app
    async with running(app):
        stream = await connect(app)
        assert await ask(stream, b"hello!") == b"Huh, go on.\n"
        assert await ask(stream, b"who are you?") == b"I am confused, may be you should google it.\n"
        assert await ask(stream, b"earth is flat.\r") == b"Yes, it makes sense to me.\n"
        assert await ask(stream, b"bye") == b"Bye!\n"
        assert await read_all(stream[0]) == b""  # the bot closed the connection
        stream[1].close()


async def test_each_connection_is_a_context_named_by_its_address_and_dropped_on_disconnect() -> None:
    app = TCPListener()
    seen: List[Tuple[str, int]] = []

    @app.on_event("count")
    async def count(ctx: TCPContext) -> None:
        ctx.cache_count = getattr(ctx, "cache_count", 0) + 1  # type: ignore[attr-defined]
        seen.append((ctx.cid, ctx.cache_count))  # type: ignore[attr-defined]
        ctx.send(f"{ctx.cid} {ctx.cache_count}")

    async with running(app):
        first, second = await connect(app), await connect(app)
        first_cid = "{}:{}".format(*first[1].get_extra_info("sockname")[:2])
        second_cid = "{}:{}".format(*second[1].get_extra_info("sockname")[:2])
        assert await ask(first, b"count") == f"{first_cid} 1\n".encode()
        assert await ask(first, b"count") == f"{first_cid} 2\n".encode()
        assert await ask(second, b"count") == f"{second_cid} 1\n".encode()
        assert {first_cid, second_cid} <= set(app.ctxs) and app.connections == 2
        first[1].write_eof()
        assert await read_all(first[0]) == b""
        assert first_cid not in app.ctxs and second_cid in app.ctxs and app.connections == 1
        second[1].close()
        first[1].close()
    assert app.ctxs == {} and app.connections == 0


async def test_length_prefixed_frames_with_a_json_codec_and_awaited_writes() -> None:
    app = TCPListener(framing="length-prefixed", codec=JsonCodec(), event_path=lambda frame: "json")
    framer = LengthPrefixFramer()

    @app.on_event("json")
    async def add(ctx: TCPContext, a: Data, b: Data) -> None:
        await ctx.write(str(a + b) + "\nwith a newline")

    async with running(app):
        reader, writer = await connect(app)
        writer.write(framer.encode(b'{"a": 1, "b": 2}') + framer.encode(b'{"a": 40, "b": 2}'))
        replies: List[bytes] = []
        while len(replies) < 2:
            replies += framer.feed(await asyncio.wait_for(reader.read(100), 10))
        assert replies == [b"3\nwith a newline", b"42\nwith a newline"]
        writer.close()


async def test_connections_beyond_the_limit_are_closed_at_once(caplog: pytest.LogCaptureFixture) -> None:
    app = TCPListener(max_connections=1)

    @app.on_event()
    async def echo(event: Event) -> None:
        event.ctx.send(event.path)

    async with running(app):
        first = await connect(app)
        assert await ask(first, b"one") == b"one\n"
        reader, writer = await connect(app)
        writer.write(b"two\n")
        try:
            refused = await read_all(reader)
        except ConnectionResetError:
            refused = b""
        assert refused == b""
        assert "max_connections=1 reached" in caplog.text
        assert await ask(first, b"still here") == b"still here\n"
        writer.close()
        first[1].close()


async def test_idle_connections_are_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.tcp")
    app = TCPListener(idle_timeout=0.2)

    @app.on_event()
    async def echo(event: Event) -> None:
        event.ctx.send(event.path)

    async with running(app):
        stream = await connect(app)
        assert await ask(stream, b"hi") == b"hi\n"
        assert await read_all(stream[0]) == b""
        assert "idle for 0.2s" in caplog.text
        assert app.ctxs == {}
        stream[1].close()


async def test_a_busy_connection_is_not_idle() -> None:
    app = TCPListener(idle_timeout=0.05)
    release = asyncio.Event()

    @app.on_event("slow")
    async def slow(ctx: TCPContext) -> None:
        await release.wait()
        ctx.send("done")

    async with running(app):
        reader, writer = await connect(app)
        writer.write(b"slow\n")
        # Several idle periods pass while the handler runs; the connection must stay.
        await asyncio.sleep(0.3)
        release.set()
        assert await asyncio.wait_for(reader.readline(), 10) == b"done\n"
        writer.close()


async def test_an_oversized_frame_closes_the_connection_after_the_frames_before_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = TCPListener(max_frame_size=8)

    @app.on_event()
    async def echo(event: Event) -> None:
        event.ctx.send(event.path)

    async with running(app):
        reader, writer = await connect(app)
        writer.write(b"short\n" + b"x" * 100 + b"\nnever\n")
        assert await read_all(reader) == b"short\n"
        assert "exceeds max_frame_size=8" in caplog.text
        writer.close()


async def test_failures_and_unmatched_frames_are_logged_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = TCPListener()

    @app.on_event("boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @app.on_event("ping")
    async def ping(ctx: TCPContext) -> None:
        ctx.send("pong")

    async with running(app):
        stream = await connect(app)
        stream[1].write(b"boom\nnothing matches this\n")
        assert await ask(stream, b"ping") == b"pong\n"
        stream[1].close()
    assert "kaboom" in caplog.text
    assert "no route matches frame 'nothing matches this'" in caplog.text


@pytest.mark.parametrize(("max_in_flight", "expected_peak"), [(1, 1), (3, 3)])
async def test_frames_of_a_connection_run_in_order_or_concurrently_up_to_max_in_flight(
    max_in_flight: int, expected_peak: int
) -> None:
    app = TCPListener(max_in_flight=max_in_flight)
    running_now = 0
    peak = 0
    order: List[str] = []
    gate = asyncio.Event()

    @app.on_event("job {n}")
    async def job(ctx: TCPContext, n: Param) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        if running_now == expected_peak:
            gate.set()
        await gate.wait()
        running_now -= 1
        order.append(n)
        ctx.send(f"done {n}")

    async with running(app):
        reader, writer = await connect(app)
        writer.write(b"".join(b"job %d\n" % i for i in range(6)))
        lines = [await asyncio.wait_for(reader.readline(), 10) for _ in range(6)]
        writer.close()
    assert peak == expected_peak
    assert sorted(lines) == sorted(b"done %d\n" % i for i in range(6))
    if max_in_flight == 1:
        assert order == [str(i) for i in range(6)]


async def test_graceful_shutdown_refuses_new_connections_finishes_in_flight_frames_and_closes() -> None:
    app = TCPListener()
    started = asyncio.Event()
    release = asyncio.Event()

    @app.on_event("slow")
    async def slow(ctx: TCPContext) -> None:
        started.set()
        await release.wait()
        ctx.send("finished")

    listen_stopped = asyncio.Event()

    @app.shutdown  # shutdown hooks run once listen() has stopped
    async def stopped() -> None:
        listen_stopped.set()

    app.port = 0
    task = asyncio.create_task(app.main())
    await asyncio.wait_for(app.wait_listening(), 10)
    reader, writer = await connect(app)
    writer.write(b"slow\n")
    await asyncio.wait_for(started.wait(), 10)
    await app.graceful_shutdown()
    await asyncio.wait_for(listen_stopped.wait(), 10)
    with pytest.raises(ConnectionRefusedError):
        await connect(app)
    assert not task.done()
    release.set()
    assert await read_all(reader) == b"finished\n"
    await asyncio.wait_for(task, 10)
    assert app.ctxs == {}
    writer.close()


async def test_cli_host_and_port_options_apply() -> None:
    from tiny_listener.cli import apply_listener_options

    app: Listener[Any] = TCPListener()
    apply_listener_options(app, host="0.0.0.0", port=9999)
    assert (app.host, app.port) == ("0.0.0.0", 9999)  # type: ignore[attr-defined]


def test_bad_options_fail_early() -> None:
    with pytest.raises(ValueError, match="unknown framing"):
        TCPListener(framing="xml")
    with pytest.raises(ValueError, match="max_in_flight"):
        TCPListener(max_in_flight=0)


def test_the_docs_show_the_chat_example_verbatim() -> None:
    page = (EXAMPLES.parent / "docs" / "tcp.md").read_text()
    first_program = page.split("```python\n", 1)[1].split("```\n", 1)[0]
    assert first_program == (EXAMPLES / "tcp_chat.py").read_text()


async def test_a_frame_whose_data_does_not_validate_is_one_warning_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = TCPListener(codec=JsonCodec(), event_path=lambda frame: "add")

    @app.on_event("add")
    async def add(ctx: TCPContext, a: Annotated[int, Data], b: Annotated[int, Data]) -> None:
        ctx.send(str(a + b))

    async with running(app):
        stream = await connect(app)
        stream[1].write(b'{"a": "1", "b": 2.5}\n')
        assert await ask(stream, b'{"a": 40, "b": 2}') == b"42\n"
        stream[1].close()
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [(record.levelno, record.exc_info) for record in warnings] == [(logging.WARNING, None)]
    assert warnings[0].getMessage().endswith(
        "2 validation errors: a: Input should be a valid integer [type=int_type]; "
        "b: Input should be a valid integer [type=int_type]"
    )
