"""Fixtures for the NATS JetStream listener tests: a reachable server, unique stream names
whose streams are deleted afterwards, a plain nats-py client, and a private nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, List

import pytest

from tests.conftest import free_port, require_service, service_reachable
from tiny_listener.nats import DEFAULT_URL, NATSListener

nats = pytest.importorskip("nats")


class Streams:
    """Unique stream/subject names for one test and the listeners made with them; their
    streams (and dead-letter streams) are deleted afterwards."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.url = url
        self.prefix = f"tl{uuid.uuid4().hex[:10]}"
        self.streams: List[str] = []

    def app(self, **options: Any) -> NATSListener[Any]:
        """A :class:`NATSListener` on a new stream (unless ``stream`` is given) with short
        retry delays, whose streams are deleted after the test."""
        options.setdefault("url", self.url)
        options.setdefault("stream", f"{self.prefix}_s")
        options.setdefault("durable", "workers")
        options.setdefault("retry_backoff", 0.05)
        app: NATSListener[Any] = NATSListener(**options)
        self.streams += [app.stream, f"{app.stream}_dead"]
        return app

    async def delete(self) -> None:
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            for stream in dict.fromkeys(self.streams):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream)
        finally:
            await nc.close()


@pytest.fixture
async def streams() -> AsyncIterator[Streams]:
    require_service("NATS", "127.0.0.1", 4222)
    found = Streams()
    yield found
    await found.delete()


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    """A plain nats-py connection to the shared server."""
    require_service("NATS", "127.0.0.1", 4222)
    nc = await nats.connect(DEFAULT_URL)
    yield nc
    await nc.close()


class NatsServer:
    """A private ``nats-server -js`` on a free port, with its store in ``store``."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):  # up to 10 s for the port to open: a process gives no event
            if service_reachable("127.0.0.1", self.port, timeout=0.05):
                return
            if self.process.returncode is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not open its port")

    async def stop(self, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@pytest.fixture
async def private_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    server = NatsServer(tmp_path / "jetstream")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(kill=True)


async def pending(nc: Any, stream: str, durable: str) -> int:
    """How many messages of ``stream`` the consumer has not had acknowledged yet (waiting or
    delivered and unacknowledged)."""
    info = await nc.jetstream().consumer_info(stream, durable)
    return int(info.num_pending) + int(info.num_ack_pending)


async def pending_once_acked(nc: Any, stream: str, durable: str, within: float = 10.0) -> int:
    """:func:`pending`, asked again until it is 0 or ``within`` seconds passed, for consumers
    still running: a handler's side effect (a printed line) comes before its acknowledgement
    reaches the server, and the server tells of no acknowledgement as an event to await."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        left = await pending(nc, stream, durable)
        if left == 0 or asyncio.get_running_loop().time() > deadline:
            return left
        await asyncio.sleep(0.05)


