"""A minimal raw HTTP/1.1 client for the loopback tests: exact bytes out, parsed responses in."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import AsyncIterator, Dict, Tuple

from tiny_listener.http import HTTPListener

TIMEOUT = 10.0


@dataclass
class Reply:
    status: int
    headers: Dict[str, str]
    body: bytes


async def read_reply(reader: asyncio.StreamReader, head_request: bool = False) -> Reply:
    """Read one response: by Content-Length, chunked, or until the server closes."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head_request or status in (204, 304) or status < 200:
        return Reply(status, headers, b"")
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), TIMEOUT)
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)).strip(), 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = await asyncio.wait_for(reader.read(), TIMEOUT)
    return Reply(status, headers, body)


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """Return True once the server has closed the connection (no further bytes)."""
    return await asyncio.wait_for(reader.read(), TIMEOUT) == b""


class Client:
    """One connection to the server under test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, target: str, body: bytes = b"", headers: str = "") -> Reply:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        await self.send(f"{method} {target} HTTP/1.1\r\nHost: t\r\n{length}{headers}\r\n".encode() + body)
        return await read_reply(self.reader, head_request=method == "HEAD")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connect(app: HTTPListener) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
    client = Client(reader, writer)
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def serving(app: HTTPListener) -> AsyncIterator[Tuple[HTTPListener, asyncio.Task[None]]]:
    """Run ``app`` on a free loopback port for the duration of the block, then stop it."""
    app.host, app.port = "127.0.0.1", 0
    task = asyncio.create_task(app.main())
    await asyncio.wait_for(app.wait_until_serving(), TIMEOUT)
    try:
        yield app, task
    finally:
        app.stop()
        await asyncio.wait_for(task, TIMEOUT + app.shutdown_timeout)
