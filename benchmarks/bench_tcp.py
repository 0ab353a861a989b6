"""TCP end to end: events/s through ``TCPListener`` against a bare asyncio streams server
doing the same work, in the same run, on loopback.

The work: each line ``hello <n>`` is answered with ``hi <n>``. The bare server loops over
``reader.readline()``, takes ``<n>`` and writes the answer, inline (``bare_streams``) or in a
task per line (``bare_streams_task_per_line``, the least an event per frame costs). ``TCPListener`` makes each line an
event (path = the line), matches the route ``hello {n}`` and the handler answers with
``ctx.send``. Two loads, each over ``CONNECTIONS`` connections at once:

- pipelined: every client writes ``LINES`` lines at once, then reads the answers;
- ping-pong: every client sends a line and waits for its answer, ``PINGS`` times.

The clients run in the same event loop as the servers, the same for both sides.

    python benchmarks/bench_tcp.py
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any, Awaitable, Callable, Dict, List

from _harness import now, report, rounds_from_env

from tiny_listener import Param
from tiny_listener.tcp import TCPContext, TCPListener

CONNECTIONS = 10
LINES = 2_000
PINGS = 300


async def answer(writer: asyncio.StreamWriter, line: bytes) -> None:
    n = line.rstrip(b"\r\n").split(b" ", 1)[1]
    writer.write(b"hi " + n + b"\n")


async def bare_server(task_per_line: bool) -> asyncio.AbstractServer:
    """A streams server that answers inline, or (``task_per_line``) in a task per line
    awaited before the next, which is what an event per frame costs at the least."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if task_per_line:
                    await asyncio.create_task(answer(writer, line))
                else:
                    await answer(writer, line)
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def make_app() -> TCPListener:
    app = TCPListener(port=0, idle_timeout=None, max_connections=CONNECTIONS * 2)

    @app.on_event("hello {n}")
    async def hello(ctx: TCPContext, n: Param) -> None:
        ctx.send("hi " + n)

    return app


async def pipelined(port: int) -> float:
    """Seconds per line when every connection writes all its lines at once."""

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"hello %d\n" % (i % 100) for i in range(LINES)))
        for _ in range(LINES):
            await reader.readline()
        writer.close()
        await writer.wait_closed()

    start = now()
    await asyncio.gather(*(one_client() for _ in range(CONNECTIONS)))
    return (now() - start) / (LINES * CONNECTIONS)


async def ping_pong(port: int) -> float:
    """Seconds per line when every connection waits for each answer before the next line."""

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(PINGS):
            writer.write(b"hello %d\n" % (i % 100))
            await reader.readline()
        writer.close()
        await writer.wait_closed()

    start = now()
    await asyncio.gather(*(one_client() for _ in range(CONNECTIONS)))
    return (now() - start) / (PINGS * CONNECTIONS)


async def main() -> None:
    rounds = rounds_from_env(5)
    servers = {"bare_streams": await bare_server(False), "bare_streams_task_per_line": await bare_server(True)}
    ports = {name: server.sockets[0].getsockname()[1] for name, server in servers.items()}
    app = make_app()
    listener = asyncio.create_task(app.main())
    figures: Dict[str, Any] = {"connections": CONNECTIONS, "rounds": rounds}
    try:
        _, ports["tiny_listener"] = await asyncio.wait_for(app.wait_listening(), 10)
        loads: Dict[str, Callable[[int], Awaitable[float]]] = {"pipelined": pipelined, "ping_pong": ping_pong}
        for load_name, load in loads.items():
            samples: Dict[str, List[float]] = {name: [] for name in ports}
            for port in ports.values():  # warm-up
                await load(port)
            for _ in range(rounds):
                for name, port in ports.items():
                    samples[name].append(await load(port))
            for name in ports:
                figures[f"{load_name}_{name}_events_per_s"] = 1 / min(samples[name])
            for baseline in servers:
                figures[f"{load_name}_ratio_vs_{baseline}"] = statistics.median(
                    b / o for b, o in zip(samples[baseline], samples["tiny_listener"])
                )
        figures["contexts_left"] = len(app.ctxs)
    finally:
        await app.graceful_shutdown()
        await listener
        for server in servers.values():
            server.close()
            await server.wait_closed()
    report("tcp", figures)


if __name__ == "__main__":
    asyncio.run(main())
