"""MQTT end to end: events/s through ``MQTTListener`` against a bare aiomqtt consumer doing
the same work, in the same run, through the same Mosquitto.

Each round publishes ``BATCH`` messages (``/bench/<side>/<room>/temperature``) from a separate
client (paho's non-blocking publish) and times until the last one is handled. The handler
takes the room (a topic level) and the payload. The bare consumer loops over
``client.messages``, splits the topic and awaits the handler inline; paho acknowledges QoS 1
messages on receipt. ``MQTTListener`` matches the route, runs each message as an event in its
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


async def bare_consumer(aiomqtt: Any, prefix: str, qos: int, counter: Counter, ready: asyncio.Event) -> None:
    async with aiomqtt.Client(HOST, int(PORT)) as client:
        await client.subscribe(f"{prefix}/+/temperature", qos=qos)
        ready.set()
        async for message in client.messages:
            room = message.topic.value.split("/")[-2]
            await handle(counter, room, message.payload)


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
    bare_prefix, ours_prefix = f"/bench/{run}/bare", f"/bench/{run}/ours"
    bare_counter, ours_counter = Counter(), Counter()

    app = MQTTListener(URL, qos=qos, max_in_flight=64)

    @app.on_event(ours_prefix + "/{room}/temperature")
    async def temperature(room: Param, payload: Data) -> None:
        await handle(ours_counter, room, payload)

    ready = asyncio.Event()
    consumer = asyncio.create_task(bare_consumer(aiomqtt, bare_prefix, qos, bare_counter, ready))
    listener = asyncio.create_task(app.main())
    samples: Dict[str, List[float]] = {"bare": [], "tiny_listener": []}
    try:
        await asyncio.wait_for(ready.wait(), 15)
        await asyncio.wait_for(app.wait_connected(), 15)
        async with aiomqtt.Client(HOST, int(PORT), max_inflight_messages=100) as publisher:
            cases: Dict[str, Callable[[], Any]] = {
                "bare": lambda: measure(publisher, bare_prefix, qos, bare_counter),
                "tiny_listener": lambda: measure(publisher, ours_prefix, qos, ours_counter),
            }
            for case in cases.values():  # warm-up
                await case()
            for _ in range(rounds):
                for name, case in cases.items():
                    samples[name].append(await case())
    finally:
        await app.graceful_shutdown()
        await listener
        consumer.cancel()
        await asyncio.wait([consumer])
    bare_rate = BATCH / min(samples["bare"])
    ours_rate = BATCH / min(samples["tiny_listener"])
    ratio = statistics.median(b / o for b, o in zip(samples["bare"], samples["tiny_listener"]))
    return {
        f"qos{qos}_bare_aiomqtt_events_per_s": bare_rate,
        f"qos{qos}_tiny_listener_events_per_s": ours_rate,
        f"qos{qos}_throughput_ratio_vs_bare": ratio,
    }


async def main() -> None:
    rounds = rounds_from_env(5)
    figures: Dict[str, Any] = {"batch": BATCH, "rounds": rounds}
    for qos in (0, 1):
        figures.update(await run_qos(qos, rounds))
    report("mqtt", figures)


if __name__ == "__main__":
    asyncio.run(main())
