"""MQTT end to end: events/s through ``MQTTListener`` against a bare aiomqtt consumer doing
the same work, in the same run, through the same Mosquitto.

Each round publishes ``BATCH`` messages (``/bench/<side>/<room>/temperature``) from a separate
client (paho's non-blocking publish) and times until the last one is handled. The handler
takes the room (a topic level) and the payload. The bare consumer loops over
``client.messages``, splits the topic and awaits the handler inline; paho acknowledges QoS 1
messages on receipt (``bare_aiomqtt``), or after the handler (``..._ack_after_handler``, QoS 1
only). ``MQTTListener`` matches the route, runs each message as an event in its
own task (up to ``max_in_flight``) and acknowledges QoS 1 messages only after the handler
succeeded. Needs Mosquitto on 127.0.0.1:1883 (``MQTT_URL`` to change it).

    python benchmarks/bench_mqtt.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import uuid
from typing import Any, Callable, Dict, List

from _harness import now, report, rounds_from_env

from tiny_listener import Data, Param
from tiny_listener.mqtt import MQTTListener

BATCH = 1_000  # Mosquitto queues at most 1000 QoS 1 messages per client beyond those in flight
URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
HOST, PORT = URL.rsplit("//", 1)[1].split(":")


class Counter:
    """Counts handled messages; ``done`` is set when ``expected`` is reached."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.done = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.done.clear()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.done.set()


async def handle(counter: Counter, room: str, payload: bytes) -> None:
    """The work of one message, the same on both sides."""
    if room and payload:
        counter.hit()


async def bare_consumer(
    aiomqtt: Any, prefix: str, qos: int, counter: Counter, ready: asyncio.Event, ack_after: bool
) -> None:
    async with aiomqtt.Client(HOST, int(PORT)) as client:
        if ack_after:
            client._client.manual_ack_set(True)
        await client.subscribe(f"{prefix}/+/temperature", qos=qos)
        ready.set()
        async for message in client.messages:
            room = message.topic.value.split("/")[-2]
            await handle(counter, room, message.payload)
            if ack_after:
                client._client.ack(message.mid, message.qos)


async def publish_batch(publisher: Any, prefix: str, qos: int) -> None:
    # paho's own publish queues without a coroutine per message, so the producer stays cheap
    # next to the consumers being measured; the broker acknowledges QoS 1 in the background.
    paho = publisher._client
    for i in range(BATCH):
        paho.publish(f"{prefix}/room{i % 10}/temperature", b"21.5", qos=qos)


async def measure(publisher: Any, prefix: str, qos: int, counter: Counter) -> float:
    """Publish one batch and return the seconds until its last message was handled."""
    counter.reset(BATCH)
    start = now()
    await publish_batch(publisher, prefix, qos)
    try:
        await asyncio.wait_for(counter.done.wait(), 60)
    except asyncio.TimeoutError:
        raise SystemExit(f"only {counter.count} of {BATCH} messages arrived on {prefix!r} (QoS {qos})") from None
    return now() - start


async def run_qos(qos: int, rounds: int) -> Dict[str, float]:
    import aiomqtt

    run = uuid.uuid4().hex[:8]
    # With QoS 1 a second bare consumer acknowledges after the handler, as MQTTListener does.
    bare_sides = {"bare_aiomqtt": False, "bare_aiomqtt_ack_after_handler": True} if qos else {"bare_aiomqtt": False}
    counters = {name: Counter() for name in [*bare_sides, "tiny_listener"]}
    prefixes = {name: f"/bench/{run}/{name}" for name in counters}

    app = MQTTListener(URL, qos=qos, max_in_flight=64)
    ours = counters["tiny_listener"]

    @app.on_event(prefixes["tiny_listener"] + "/{room}/temperature")
    async def temperature(room: Param, payload: Data) -> None:
        await handle(ours, room, payload)

    consumers = []
    for name, ack_after in bare_sides.items():
        ready = asyncio.Event()
        consumers.append(
            asyncio.create_task(bare_consumer(aiomqtt, prefixes[name], qos, counters[name], ready, ack_after))
        )
        await asyncio.wait_for(ready.wait(), 15)
    listener = asyncio.create_task(app.main())
    samples: Dict[str, List[float]] = {name: [] for name in counters}
    try:
        await asyncio.wait_for(app.wait_connected(), 15)
        async with aiomqtt.Client(HOST, int(PORT), max_inflight_messages=100) as publisher:

            def case(name: str) -> Callable[[], Any]:
                return lambda: measure(publisher, prefixes[name], qos, counters[name])

            cases = {name: case(name) for name in counters}
            for run_case in cases.values():  # warm-up
                await run_case()
            for _ in range(rounds):
                for name, run_case in cases.items():
                    samples[name].append(await run_case())
    finally:
        await app.graceful_shutdown()
        await listener
        for consumer in consumers:
            consumer.cancel()
        await asyncio.wait(consumers)
    figures: Dict[str, float] = {}
    for name in counters:
        figures[f"qos{qos}_{name}_events_per_s"] = BATCH / min(samples[name])
    for name in bare_sides:
        figures[f"qos{qos}_ratio_vs_{name}"] = statistics.median(
            b / o for b, o in zip(samples[name], samples["tiny_listener"])
        )
    return figures


async def main() -> None:
    rounds = rounds_from_env(5)
    figures: Dict[str, Any] = {"batch": BATCH, "rounds": rounds}
    for qos in (0, 1):
        figures.update(await run_qos(qos, rounds))
    report("mqtt", figures)


if __name__ == "__main__":
    asyncio.run(main())
