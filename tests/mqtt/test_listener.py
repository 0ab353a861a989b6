"""The MQTT listener against the shared Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import logging
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from tests.mqtt.conftest import client, running
from tiny_listener import Context, Data, Event, Param
from tiny_listener.codecs import JsonCodec
from tiny_listener.mqtt import MQTTListener, TopicFilterError, open_envelope

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Ended:
    """An event observer: ``await ended.wait_for(n)`` returns once ``n`` events have ended."""

    def __init__(self) -> None:
        self.events: List[Event[Any]] = []
        self.params: List[Any] = []  # read as the events end: an ended event drops its params
        self._changed = asyncio.Event()

    def event_started(self, event: Event[Any]) -> None: ...

    def event_ended(self, event: Event[Any]) -> None:
        self.events.append(event)
        self.params.append(dict(event.params))
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 15) -> List[Event[Any]]:
        async def enough() -> None:
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.events


async def next_message(messages: Any, timeout: float = 15) -> Any:
    return await asyncio.wait_for(messages.__anext__(), timeout)


async def test_the_sensors_example_receives_its_own_readings(mqtt_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("example_mqtt_sensors", EXAMPLES / "mqtt_sensors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app: MQTTListener = module.app
    ended = Ended()
    app.add_event_observer(ended)
    assert app.subscriptions() == [("/iot/home/+/temperature", 1)]
    async with running(app):
        events = await ended.wait_for(2)
    assert len(events) >= 2
    assert {params["room"] for params in ended.params[:2]} == {"living_room", "kitchen"}
    printed = capsys.readouterr().out
    assert "INFO: living_room" in printed and "°C" in printed


async def test_topic_params_and_raw_payload_reach_the_handler(mqtt_url: str, prefix: str) -> None:
    app = MQTTListener(mqtt_url)
    seen: List[Tuple[str, bytes, int, bool]] = []
    done = asyncio.Event()

    @app.on_event(prefix + "/iot/home/{room}/temperature")
    async def temperature(room: Param, payload: Data, ctx: Context) -> None:
        message = ctx.scope["message"]
        seen.append((room, payload, message.qos, message.retain))
        if len(seen) == 2:
            done.set()

    assert app.subscriptions() == [(prefix + "/iot/home/+/temperature", 1)]
    async with running(app):
        async with client(mqtt_url) as bare:
            await bare.publish(prefix + "/iot/home/kitchen/temperature", b"15", qos=1)
            await bare.publish(prefix + "/iot/home/kitchen/humidity", b"not subscribed", qos=1)
            await bare.publish(prefix + "/iot/home/attic/temperature", b"\xff raw", qos=0)
        await asyncio.wait_for(done.wait(), 15)
    assert seen == [("kitchen", b"15", 1, False), ("attic", b"\xff raw", 0, False)]


async def test_json_codec_and_the_publish_helper(mqtt_url: str, prefix: str) -> None:
    app = MQTTListener(mqtt_url, codec=JsonCodec())
    got: List[Any] = []
    done = asyncio.Event()

    @app.on_event(prefix + "/orders/{id:int}")
    async def order(id: Param, amount: Data) -> None:
        got.append((id, amount))

    @app.on_event(prefix + "/lists/{name}")
    async def a_list(name: Param, payload: Data) -> None:
        got.append((name, payload))
        done.set()

    async with running(app):
        await app.publish(prefix + "/orders/7", {"amount": 12.5})
        await app.publish(prefix + "/lists/numbers", [1, 2, 3])
        await asyncio.wait_for(done.wait(), 15)
    assert got == [(7, 12.5), ("numbers", [1, 2, 3])]


async def test_a_failing_handler_is_retried_then_dead_lettered(mqtt_url: str, prefix: str) -> None:
    dead_letter = prefix + "/dead"
    app = MQTTListener(mqtt_url, max_retries=2, retry_backoff=0.01, dead_letter=dead_letter)
    attempts: Dict[str, int] = {}
    recovered = asyncio.Event()

    @app.on_event(prefix + "/jobs/{name}")
    async def job(name: Param) -> None:
        attempts[name] = attempts.get(name, 0) + 1
        if name == "flaky" and attempts[name] == 2:
            recovered.set()
            return
        raise RuntimeError(f"{name} failed")

    async with client(mqtt_url) as watcher:
        await watcher.subscribe(dead_letter, qos=1)
        async with running(app):
            await app.publish(prefix + "/jobs/flaky", b"f")
            await app.publish(prefix + "/jobs/broken", b"\x00payload")
            letter = open_envelope((await next_message(watcher.messages)).payload)
            await asyncio.wait_for(recovered.wait(), 15)
    assert attempts == {"flaky": 2, "broken": 3}
    assert letter["topic"] == prefix + "/jobs/broken" and letter["payload"] == b"\x00payload"
    assert letter["reason"] == "handler-failed" and letter["attempts"] == 3 and "broken failed" in letter["error"]


async def test_undecodable_and_unroutable_messages_are_dead_lettered_without_retries(
    mqtt_url: str, prefix: str
) -> None:
    dead_letter = prefix + "/dead"
    app = MQTTListener(mqtt_url, codec=JsonCodec(), dead_letter=dead_letter, retry_backoff=0.01)
    calls: List[Any] = []

    @app.on_event(prefix + "/n/{id:int}")
    async def numbered(id: Param) -> None:
        calls.append(id)

    async with client(mqtt_url) as watcher:
        await watcher.subscribe(dead_letter, qos=1)
        async with running(app):
            await app.publish(prefix + "/n/1", b"{not json")
            await app.publish(prefix + "/n/abc", b"{}")  # '+' lets it through, {id:int} does not match
            letters = [open_envelope((await next_message(watcher.messages)).payload) for _ in range(2)]
    assert calls == []
    assert sorted((letter["reason"], letter["topic"], letter["attempts"]) for letter in letters) == [
        ("no-route", prefix + "/n/abc", 0),
        ("undecodable", prefix + "/n/1", 0),
    ]


async def test_without_a_dead_letter_topic_a_failed_message_is_logged_with_its_payload(
    mqtt_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = MQTTListener(mqtt_url, max_retries=0)
    failed = asyncio.Event()

    @app.on_event(prefix + "/x")
    async def always_fails() -> None:
        failed.set()
        raise ValueError("nope")

    async with running(app):
        await app.publish(prefix + "/x", b"keep me")
        await asyncio.wait_for(failed.wait(), 15)
    records = [r for r in caplog.records if r.name == "tiny_listener.mqtt" and r.levelno == logging.ERROR]
    assert len(records) == 1
    assert base64.b64encode(b"keep me").decode() in records[0].getMessage()
    assert "handler-failed after 1 attempt(s)" in records[0].getMessage()


async def test_a_route_without_a_topic_filter_fails_at_startup(mqtt_url: str, prefix: str) -> None:
    app = MQTTListener(mqtt_url)

    @app.on_event(prefix + "/sensor-{id}")
    async def sensor() -> None: ...

    with pytest.raises(TopicFilterError, match="mixes a parameter with text"):
        await asyncio.wait_for(app.main(), 15)


async def test_at_most_max_in_flight_messages_are_handled_at_once(mqtt_url: str, prefix: str) -> None:
    app = MQTTListener(mqtt_url, max_in_flight=2)
    running_now = 0
    peak = 0
    gate = asyncio.Event()
    ended = Ended()
    app.add_event_observer(ended)

    @app.on_event(prefix + "/work/{n}")
    async def work() -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        if running_now == 2:
            gate.set()
        await gate.wait()
        running_now -= 1

    async with running(app):
        for n in range(8):
            await app.publish(f"{prefix}/work/{n}", b"")
        await ended.wait_for(8)
    assert peak == 2


async def test_shutdown_acknowledges_finished_messages_and_leaves_cancelled_ones_for_redelivery(
    mqtt_url: str, prefix: str
) -> None:
    client_id = "tl-" + prefix.replace("/", "-")
    release = asyncio.Event()
    started = asyncio.Event()

    def make_app(shutdown_timeout: float) -> Tuple[MQTTListener, List[str]]:
        app = MQTTListener(mqtt_url, client_id=client_id, shutdown_timeout=shutdown_timeout)
        handled: List[str] = []

        @app.on_event(prefix + "/{name}")
        async def job(name: Param) -> None:
            handled.append(name)
            if name in ("finishes", "hangs"):
                started.set()
                if name == "finishes":
                    await release.wait()
                else:
                    await asyncio.Event().wait()

        return app, handled

    try:
        # 1. A message in flight at shutdown finishes and is acknowledged.
        first, _ = make_app(shutdown_timeout=15)
        async with running(first) as task:
            await first.publish(prefix + "/finishes", b"")
            await asyncio.wait_for(started.wait(), 15)
            await first.graceful_shutdown()
            release.set()
            await asyncio.wait_for(task, 15)
        # 2. A message whose handler outlives the shutdown deadline is not acknowledged.
        started.clear()
        second, _ = make_app(shutdown_timeout=0.2)
        async with running(second) as task:
            await second.publish(prefix + "/hangs", b"")
            await asyncio.wait_for(started.wait(), 15)
        # 3. The same session again: "hangs" comes back, "finishes" does not; the marker
        #    published last arrives after any redelivery.
        third, handled = make_app(shutdown_timeout=0.2)
        ended = Ended()
        third.add_event_observer(ended)
        async with running(third):
            await third.publish(prefix + "/marker", b"")
            while "marker" not in handled:
                await ended.wait_for(len(ended.events) + 1)
        assert handled[0] == "hangs" and "finishes" not in handled
    finally:
        async with client(mqtt_url, identifier=client_id, clean_session=True):
            pass  # end the persistent session on the shared broker


async def test_publish_without_a_connection_raises_not_connected() -> None:
    from tiny_listener.mqtt import NotConnected

    app = MQTTListener("mqtt://127.0.0.1:1")
    with pytest.raises(NotConnected):
        await app.publish("x", b"", timeout=0.05)


def test_bad_options_fail_early() -> None:
    with pytest.raises(ValueError, match="scheme"):
        MQTTListener("http://127.0.0.1")
    with pytest.raises(ValueError, match="qos"):
        MQTTListener(qos=3)
    app = MQTTListener("mqtt://user:p%40ss@broker.example:1884")
    assert (app.broker_host, app.broker_port, app._username, app._password) == ("broker.example", 1884, "user", "p@ss")


async def test_a_shared_group_splits_the_messages_between_listeners(mqtt_url: str, prefix: str) -> None:
    group = prefix.replace("/", "-")
    handled: List[Tuple[int, str]] = []
    all_done = asyncio.Event()

    def make_app(name: str) -> MQTTListener:
        app = MQTTListener(mqtt_url, shared_group=group)

        @app.on_event(prefix + "/shared/{n:int}")
        async def shared(n: Param) -> None:
            handled.append((n, name))
            if len(handled) == 20:
                all_done.set()

        return app

    first, second = make_app("first"), make_app("second")
    assert first.subscriptions() == [(f"$share/{group}/{prefix}/shared/+", 1)]
    async with running(first), running(second):
        for n in range(20):
            await first.publish(f"{prefix}/shared/{n}", b"")
        await asyncio.wait_for(all_done.wait(), 15)
    assert sorted(n for n, _ in handled) == list(range(20))  # each message once, none lost
    assert {name for _, name in handled} == {"first", "second"}


async def test_publish_after_the_listener_stopped_fails_at_once(mqtt_url: str, prefix: str) -> None:
    from tiny_listener.mqtt import NotConnected

    app = MQTTListener(mqtt_url)

    @app.on_event(prefix + "/x")
    async def x() -> None: ...

    async with running(app):
        pass
    with pytest.raises(NotConnected, match="stopped"):
        await app.publish(prefix + "/x", b"", timeout=60)  # does not wait the 60 s


async def test_a_clean_session_shutdown_handles_every_message_already_received(mqtt_url: str, prefix: str) -> None:
    app = MQTTListener(mqtt_url, max_in_flight=1)  # no client_id: a clean session
    handled: List[str] = []
    first_started = asyncio.Event()
    release = asyncio.Event()

    @app.on_event(prefix + "/{n}")
    async def job(n: Param) -> None:
        if n == "0":
            first_started.set()
            await release.wait()
        handled.append(n)

    async with running(app) as task:
        await app.publish(prefix + "/0", b"")
        await asyncio.wait_for(first_started.wait(), 15)
        for n in range(1, 6):  # acknowledged by the broker, so on their way to the listener
            await app.publish(f"{prefix}/{n}", b"")
        await app.graceful_shutdown()
        release.set()
        await asyncio.wait_for(task, 15)
    assert handled == [str(n) for n in range(6)]


def test_http_routes_of_the_same_listener_are_not_subscribed_to() -> None:
    app = MQTTListener()

    @app.on_event("GET:/healthz")
    async def healthz() -> None: ...

    @app.on_event("sensors/{id}/temperature")
    async def temperature() -> None: ...

    assert app.subscriptions() == [("sensors/+/temperature", 1)]
