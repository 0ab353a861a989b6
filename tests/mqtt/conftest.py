"""Fixtures for the MQTT tests: the shared Mosquitto, unique topics, a running listener, and a
private ``mosquitto`` for the tests that stop, restart or lose it."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from tests.conftest import IN_CI, free_port, require_service, service_reachable
from tiny_listener import Listener

aiomqtt = pytest.importorskip("aiomqtt")

SHARED_URL = "mqtt://127.0.0.1:1883"


@pytest.fixture
def mqtt_url() -> str:
    require_service("Mosquitto", "127.0.0.1", 1883)
    return SHARED_URL


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test alone, so tests sharing the broker never see each other."""
    return f"tl-test/{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def running(app: Listener[Any], connected: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app`` in a task (until it is subscribed, if ``connected``); on exit shut it down
    gracefully and wait for it to end."""
    task = asyncio.create_task(app.main())
    try:
        if connected:
            waiter = asyncio.ensure_future(app.wait_connected())  # type: ignore[attr-defined]
            await asyncio.wait([waiter, task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                await asyncio.wait([waiter])
                if task.done():
                    task.result()  # raise what made it stop
                raise AssertionError("the listener did not connect within 15s")
        yield task
    finally:
        await app.graceful_shutdown()
        await task


@asynccontextmanager
async def client(url: str, **options: Any) -> AsyncIterator[Any]:
    """A bare aiomqtt client on ``url``'s broker."""
    host, port = url.rsplit("//", 1)[1].split(":")
    async with aiomqtt.Client(host, int(port), **options) as bare:
        yield bare


class MosquittoServer:
    """A ``mosquitto`` on a free loopback port, anonymous, persisting sessions in a tmp dir
    (so that a restart keeps them, as a production broker would), restartable."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto")
        if binary is None:
            if IN_CI:
                pytest.fail("the mosquitto binary is not installed (CI=true: a missing broker fails)")
            pytest.skip("the mosquitto binary is not installed")
        self.binary = binary
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Run as root, mosquitto would switch to user "mosquitto", who cannot write here.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "log_dest stderr\n"
        )
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not service_reachable("127.0.0.1", self.port, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)  # polling a process we started: there is nothing to await

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM: it saves its sessions), and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
