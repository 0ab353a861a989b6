"""Faults, each on a private ``mosquitto``: the broker restarting mid-stream, and the consumer
process killed in the middle of an event."""

from __future__ import annotations

import asyncio
import logging
from typing import Dict

import pytest

from tests.log_watch import watching_log
from tests.mqtt.conftest import MosquittoServer, client, running
from tests.worker_processes import Workers
from tiny_listener import Param
from tiny_listener.mqtt import MQTTListener


async def publish_range(url: str, topic: str, numbers: range) -> None:
    async with client(url) as publisher:
        for n in numbers:
            await publisher.publish(f"{topic}/{n}", b"", qos=1)


async def test_broker_restart_mid_stream_loses_nothing_and_says_so(
    mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.mqtt")
    app = MQTTListener(mosquitto.url, client_id="restart-test", reconnect_backoff=0.05, max_in_flight=8)
    calls: Dict[int, int] = {}
    changed = asyncio.Event()
    restarted = asyncio.Event()
    held = range(20, 24)  # in the middle of their event while the broker restarts

    @app.on_event("stream/{n:int}")
    async def item(n: Param) -> None:
        if n in held:
            await restarted.wait()
        calls[n] = calls.get(n, 0) + 1
        changed.set()

    async def until_handled(count: int) -> None:
        while len(calls) < count:
            changed.clear()
            await changed.wait()

    async with running(app):
        await publish_range(mosquitto.url, "stream", range(200))
        await asyncio.wait_for(until_handled(20), 15)
        await asyncio.get_running_loop().run_in_executor(None, mosquitto.stop)
        await asyncio.get_running_loop().run_in_executor(None, mosquitto.start)
        await asyncio.wait_for(app.wait_connected(count=2), 30)
        restarted.set()
        await publish_range(mosquitto.url, "stream", range(200, 300))
        await asyncio.wait_for(until_handled(300), 30)
        # The held messages could not be acknowledged on the lost connection: they come again.
        while any(calls[n] < 2 for n in held):
            changed.clear()
            await asyncio.wait_for(changed.wait(), 30)
    assert set(calls) == set(range(300))
    assert "lost MQTT broker" in caplog.text and "reconnected to MQTT broker" in caplog.text
    assert "handled after its connection was lost: not acknowledged" in caplog.text


async def test_a_consumer_killed_mid_event_gets_its_message_redelivered(mosquitto: MosquittoServer) -> None:
    async with Workers("tests.mqtt._worker") as workers:
        worker = await workers.start(mosquitto.url, "killed-consumer", "jobs")
        await publish_range(mosquitto.url, "jobs", range(1))
        assert await worker.next_line() == "started jobs/0"
        await worker.kill()  # no shutdown, no acknowledgement

    app = MQTTListener(mosquitto.url, client_id="killed-consumer")
    redelivered = asyncio.Event()

    @app.on_event("jobs/{n}")
    async def job(n: Param) -> None:
        assert n == "0"
        redelivered.set()

    async with running(app):
        await asyncio.wait_for(redelivered.wait(), 15)


async def test_a_listener_started_before_its_broker_retries_and_says_so(mosquitto: MosquittoServer) -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, mosquitto.stop)
    app = MQTTListener(mosquitto.url, reconnect_backoff=0.05, max_reconnect_delay=0.2)
    handled = asyncio.Event()

    @app.on_event("late/{n}")
    async def late() -> None:
        handled.set()

    with watching_log("tiny_listener.mqtt", "cannot connect to MQTT broker") as refused:
        async with running(app, connected=False):
            await asyncio.wait_for(refused.wait(), 15)
            await loop.run_in_executor(None, mosquitto.start)
            await asyncio.wait_for(app.wait_connected(), 30)
            await app.publish("late/1", b"")
            await asyncio.wait_for(handled.wait(), 15)
