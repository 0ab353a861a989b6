"""NATS JetStream throughput: events/s of a ``NATSListener`` against a bare nats-py pull
consumer doing the same work (fetch batches, decode the JSON body, call the handler, ack
each message), measured round by round in the same run and process.

The stream is filled once with the events (not timed); each measurement creates a new
durable consumer that reads it from the start, times from connecting until every event has
been handled, checks that the consumer has nothing left unacknowledged, and deletes it.
Needs nats-server -js on 127.0.0.1:4222 (or BENCH_NATS_URL).

    python benchmarks/bench_nats.py            # BENCH_ROUNDS=3, BENCH_NATS_EVENTS=10000
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

from _broker_throughput import handle, listener_rate
from _harness import eprint, interleaved_async, now, report, rounds_from_env, throughput_figures

from tiny_listener.nats import NATSListener

URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
EVENTS = int(os.environ.get("BENCH_NATS_EVENTS", "10000"))
IN_FLIGHT = 100
STREAM = f"BENCH_{uuid.uuid4().hex[:8]}"
SUBJECT = f"{STREAM.lower()}.item"


async def fill(js: Any) -> None:
    await js.add_stream(name=STREAM, subjects=[f"{SUBJECT}.*"])
    for start in range(0, EVENTS, 500):
        await asyncio.gather(*(
            js.publish(f"{SUBJECT}.{n}", json.dumps({"amount": n % 97}).encode())
            for n in range(start, min(start + 500, EVENTS))
        ))


async def run_bare(durable: str) -> float:
    from nats.js.api import AckPolicy, ConsumerConfig

    import nats

    handled = 0
    start = now()
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        await js.add_consumer(STREAM, config=ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT))
        subscription = await js.pull_subscribe_bind(durable=durable, stream=STREAM)
        while handled < EVENTS:
            try:
                messages = await subscription.fetch(IN_FLIGHT, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for message in messages:
                n = int(message.subject.rsplit(".", 1)[1])
                data = json.loads(message.data)
                await handle(n, data["amount"])
                await message.ack()
                handled += 1
        await nc.flush()
        elapsed = now() - start
    finally:
        await nc.close()
    return EVENTS / elapsed


async def run_ours(durable: str) -> float:
    app: NATSListener[Any] = NATSListener(URL, stream=STREAM, durable=durable, max_in_flight=IN_FLIGHT,
                                          max_retries=0, dead_letter=False)
    return await listener_rate(app, SUBJECT + ".{n:int}", EVENTS)


async def measure(js: Any, kind: str) -> float:
    durable = f"bench{uuid.uuid4().hex[:8]}"
    try:
        rate = await (run_ours(durable) if kind == "ours" else run_bare(durable))
        info = await js.consumer_info(STREAM, durable)
        if info.num_pending or info.num_ack_pending:
            raise RuntimeError(f"{kind} left {info.num_pending} pending, {info.num_ack_pending} unacknowledged")
    finally:
        await js.delete_consumer(STREAM, durable)
    return rate


async def run() -> None:
    import nats

    nc = await nats.connect(URL)
    js = nc.jetstream()
    try:
        await fill(js)
        cases = {"tiny_listener": lambda: measure(js, "ours"), "bare": lambda: measure(js, "bare")}
        # One unrecorded measurement of ours first, as a warm-up: imports, server caches.
        samples = await interleaved_async(cases, rounds_from_env(3), warm_up=["tiny_listener"], round_format="{:.0f}/s")
    finally:
        await js.delete_stream(STREAM)
        await nc.close()
    report("nats-jetstream", {
        "events_per_measurement": EVENTS,
        "in_flight": IN_FLIGHT,
        **throughput_figures(samples, "nats_py"),
    })


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(run())
    eprint(f"took {time.monotonic() - started:.1f}s")
