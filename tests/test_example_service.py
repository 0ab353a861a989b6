"""examples/service.py end to end: one process consumes NATS JetStream and serves /healthz,
/readyz, /metrics and an API route; readiness follows the broker going away and coming back."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Tuple

import pytest

from tests.cli_helpers import LineReader, running_cli
from tests.conftest import free_port
from tests.nats.conftest import NatsServer, nats

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 30.0


def get(url: str) -> Tuple[int, str]:
    """GET ``url``; return (status, body), for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def line(reader: LineReader, text: str) -> str:
    found = await asyncio.to_thread(reader.wait_for, text, TIMEOUT)
    assert found is not None, f"no line with {text!r}; output so far: {reader.seen}"
    return found


async def publish(url: str, subject: str, data: Any) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject, json.dumps(data).encode())
    finally:
        await nc.close()


async def test_the_service_consumes_serves_and_reports_readiness(tmp_path: Path) -> None:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    server = NatsServer(tmp_path / "jetstream")
    await server.start()
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    try:
        with running_cli(
            "--app-dir", str(EXAMPLES), "--port", str(http_port), "service:app", env={"NATS_URL": server.url}
        ) as (proc, reader):
            await line(reader, "HTTP server running")
            await line(reader, "connected to NATS")
            assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200
            status, body = await asyncio.to_thread(get, base + "/readyz")
            assert status == 200, body
            assert json.loads(body)["sources"]["nats"]["state"] == "ready"

            await publish(server.url, "payments.ann", {"amount": 12})
            await publish(server.url, "payments.ann", {"amount": 30})
            # The access log says when the API answered; the payments are handled meanwhile.
            for _ in range(100):
                status, body = await asyncio.to_thread(get, base + "/customers/ann")
                if json.loads(body)["paid"] == 42:
                    break
                await asyncio.sleep(0.05)  # the handler runs in another process: nothing to await
            assert (status, json.loads(body)) == (200, {"customer": "ann", "paid": 42})
            status, metrics = await asyncio.to_thread(get, base + "/metrics")
            assert status == 200
            assert 'tiny_listener_events_started_total{handler="payment",route="payments.{customer}"} 2.0' in metrics

            # The broker goes away: the service stays alive but is not ready.
            await server.stop(kill=True)
            await line(reader, "consuming stopped")
            assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200
            status, body = await asyncio.to_thread(get, base + "/readyz")
            assert status == 503
            assert json.loads(body)["sources"]["nats"]["state"] == "reconnecting"

            # It comes back: ready again, and consuming.
            await server.start()
            await line(reader, "reconnected to NATS")
            assert (await asyncio.to_thread(get, base + "/readyz"))[0] == 200
            await publish(server.url, "payments.bob", {"amount": 5})
            for _ in range(100):
                _, body = await asyncio.to_thread(get, base + "/customers/bob")
                if json.loads(body)["paid"] == 5:
                    break
                await asyncio.sleep(0.05)
            assert json.loads(body)["paid"] == 5

            proc.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(proc.wait, TIMEOUT) == 0
    finally:
        await server.stop(kill=True)
