"""Faults, each on a private ``mosquitto``: the broker restarting mid-stream, and the consumer
process killed in the middle of an event."""

from __future__ import annotations

import asyncio
import contextlib
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
    assert "is unreachable: consuming stopped" in caplog.text
    assert "reconnected to MQTT broker" in caplog.text
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

    with watching_log("tiny_listener.mqtt", "is unreachable: cannot connect") as refused:
        async with running(app, connected=False):
            await asyncio.wait_for(refused.wait(), 15)
            await loop.run_in_executor(None, mosquitto.start)
            await asyncio.wait_for(app.wait_connected(), 30)
            await app.publish("late/1", b"")
            await asyncio.wait_for(handled.wait(), 15)


# Subscription kinds for the restart under load: (shared group?, persistent sessions?, workers)
KINDS = {
    "plain-clean": (False, False, 1),
    "plain-persistent": (False, True, 1),
    "shared-clean": (True, False, 2),
    "shared-persistent": (True, True, 2),
}
MAX_IN_FLIGHT = 5
BEFORE, AFTER = 1000, 100  # messages published before the restart, and after the reconnect
HOLD_AFTER = 200  # handlers are held once this many messages were handled


class Worker:
    """One listener of the restart test and what its handlers did."""

    def __init__(self, app: MQTTListener) -> None:
        self.app = app
        self.held = 0  # handlers that waited at the closed gate
        self.full = asyncio.Event()  # every slot holds a handler waiting at the gate


@pytest.mark.parametrize("kind", KINDS)
async def test_broker_restart_under_load_new_messages_flow_and_duplicates_stay_within_in_flight(
    mosquitto: MosquittoServer, kind: str
) -> None:
    shared, persistent, count = KINDS[kind]
    loop = asyncio.get_running_loop()
    starts: Dict[int, int] = {}
    handled: Dict[int, float] = {}
    changed = asyncio.Event()
    gate = asyncio.Event()  # handlers pass it at once while it is set
    gate.set()
    workers = []
    for number in range(count):
        app = MQTTListener(
            mosquitto.url,
            client_id=f"{kind}-{number}" if persistent else None,
            shared_group="workers" if shared else None,
            max_in_flight=MAX_IN_FLIGHT,
            reconnect_backoff=0.05,
            max_reconnect_delay=0.5,
        )
        worker = Worker(app)

        async def item(n: Param, worker: Worker = worker) -> None:
            starts[n] = starts.get(n, 0) + 1
            if not gate.is_set():
                worker.held += 1
                if worker.held == MAX_IN_FLIGHT:
                    worker.full.set()
                await gate.wait()
            handled.setdefault(n, loop.time())
            if len(handled) == HOLD_AFTER:
                # Hold every handler from now on: with all slots taken no acknowledgement
                # is in transit when the broker stops, and a listener must notice the loss
                # while it cannot start anything.
                gate.clear()
            changed.set()

        app.on_event("load/{n:int}")(item)
        workers.append(worker)

    async def until_handled(numbers: range) -> None:
        while not all(n in handled for n in numbers):
            changed.clear()
            await changed.wait()

    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(running(worker.app))
        await publish_range(mosquitto.url, "load", range(BEFORE))
        for worker in workers:
            await asyncio.wait_for(worker.full.wait(), 15)
        await loop.run_in_executor(None, mosquitto.stop)
        await loop.run_in_executor(None, mosquitto.start)
        up = loop.time()
        for worker in workers:
            await asyncio.wait_for(worker.app.wait_connected(count=2), 30)
        reconnected = loop.time()
        gate.set()
        await publish_range(mosquitto.url, "load", range(BEFORE, BEFORE + AFTER))
        await asyncio.wait_for(until_handled(range(BEFORE, BEFORE + AFTER)), 30)
        first_new = min(handled[n] for n in range(BEFORE, BEFORE + AFTER))
        if persistent:  # the broker kept every message for the session: none is lost
            await asyncio.wait_for(until_handled(range(BEFORE)), 30)

    lost = sum(1 for n in range(BEFORE + AFTER) if n not in handled)
    duplicates = sum(times - 1 for times in starts.values())
    print(
        f"\n{kind}: {count} worker(s), max_in_flight={MAX_IN_FLIGHT}: lost {lost} of {BEFORE + AFTER}, "
        f"duplicates {duplicates}, reconnected {reconnected - up:.2f}s after the broker was up, "
        f"first new message handled {first_new - up:.2f}s after it was up"
    )
    # Only the handlers running when the connection dropped run again.
    assert duplicates <= count * MAX_IN_FLIGHT
    if persistent:
        assert lost == 0


async def test_shutdown_completes_while_the_broker_is_away(
    mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = MQTTListener(mosquitto.url, client_id="away-test", reconnect_backoff=0.05)

    @app.on_event("stream/{n:int}")
    async def item(n: Param) -> None:
        pass

    with watching_log("tiny_listener.mqtt", "is unreachable") as unreachable:
        task = asyncio.create_task(app.main())
        await asyncio.wait_for(app.wait_connected(), 20)
        await asyncio.get_running_loop().run_in_executor(None, mosquitto.stop)
        await asyncio.wait_for(unreachable.wait(), 20)
        app.stop()
        await asyncio.wait_for(task, 20)  # the reconnect loop gives up instead of holding the shutdown
    assert [record.getMessage() for record in caplog.records if "did not close" in record.getMessage()] == []
