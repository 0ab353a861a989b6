"""Typed data over a real broker: a pydantic-typed handler on a ``NATSListener`` against
FastStream's equivalent pydantic subscriber on the same NATS JetStream stream, measured round
by round in the same run and process.

The stream is filled once with ``{"sku", "qty", "price"}`` JSON messages (not timed); each
measurement creates a new durable pull consumer that reads it from the start, times from
starting the app until its handler, taking the messages as an ``Order`` pydantic model, has run
for every one, checks that nothing is left unacknowledged, and deletes the consumer. Both
acknowledge each message after its handler succeeded.

- ``tiny_listener``: ``NATSListener(max_in_flight=100)``, ``async def order(order: Order)``;
- ``faststream_pull``: ``NatsBroker``, ``@broker.subscriber(subject, stream=..., durable=...,
  pull_sub=PullSub(batch_size=100))``, ``async def order(order: Order)`` (FastStream 0.7,
  ``pip install -e '.[bench]'``); it handles the messages of a batch one after the other;
- ``faststream_push``: the same as a durable push consumer with ``max_workers=100``, handling
  up to 100 messages at once as ``max_in_flight=100`` does.

Goal: at least 2x FastStream's events/s, against the faster of its two set-ups in each round
(``ratio_vs_faststream_best``). Needs nats-server -js on 127.0.0.1:4222 (or
BENCH_NATS_URL).

    python benchmarks/bench_typed_nats.py       # BENCH_ROUNDS=5, BENCH_NATS_EVENTS=10000
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import warnings
from typing import Any

from _harness import eprint, interleaved_async, median_ratio, now, report, rounds_from_env
from pydantic import BaseModel

from tiny_listener.nats import NATSListener

URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
EVENTS = int(os.environ.get("BENCH_NATS_EVENTS", "10000"))
IN_FLIGHT = 100
STREAM = f"BENCHTYPED_{uuid.uuid4().hex[:8]}"
SUBJECT = f"{STREAM.lower()}.order"


class Order(BaseModel):
    sku: str
    qty: int
    price: float


async def fill(js: Any) -> None:
    await js.add_stream(name=STREAM, subjects=[f"{SUBJECT}.*"])
    for start in range(0, EVENTS, 500):
        await asyncio.gather(*(
            js.publish(f"{SUBJECT}.{n}", json.dumps({"sku": f"pen-{n}", "qty": n % 7, "price": 1.25}).encode())
            for n in range(start, min(start + 500, EVENTS))
        ))


async def run_ours(durable: str) -> float:
    app: NATSListener[Any] = NATSListener(URL, stream=STREAM, durable=durable, max_in_flight=IN_FLIGHT,
                                          max_retries=0, dead_letter=False, create_stream=False)
    done = asyncio.Event()
    handled = 0

    @app.on_event(SUBJECT + ".{n}")
    async def order(order: Order) -> None:
        nonlocal handled
        handled += order.qty >= 0
        if handled == EVENTS:
            done.set()

    start = now()
    task = asyncio.create_task(app.main())
    await done.wait()
    elapsed = now() - start
    app.stop()
    await task
    return EVENTS / elapsed


async def run_faststream(durable: str, push: bool) -> float:
    from faststream.nats import JStream, NatsBroker, PullSub

    broker = NatsBroker(URL, logger=None)
    done = asyncio.Event()
    handled = 0
    if push:
        # FastStream warns that a durable push consumer does not scale out: one process here.
        warnings.filterwarnings("ignore", "The JetStream Push consumer", RuntimeWarning)
        subscriber = broker.subscriber(
            f"{SUBJECT}.*", stream=JStream(STREAM, declare=False), durable=durable, max_workers=IN_FLIGHT
        )
    else:
        subscriber = broker.subscriber(
            f"{SUBJECT}.*",
            stream=JStream(STREAM, declare=False),
            durable=durable,
            pull_sub=PullSub(batch_size=IN_FLIGHT, timeout=1.0),
        )

    @subscriber
    async def order(order: Order) -> None:
        nonlocal handled
        handled += order.qty >= 0
        if handled == EVENTS:
            done.set()

    start = now()
    await broker.start()
    await done.wait()
    elapsed = now() - start
    await broker.stop()
    return EVENTS / elapsed


async def measure(js: Any, kind: str) -> float:
    durable = f"bench{uuid.uuid4().hex[:8]}"
    try:
        if kind == "ours":
            rate = await run_ours(durable)
        else:
            rate = await run_faststream(durable, push=kind == "faststream_push")
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
        cases = {
            "tiny_listener": lambda: measure(js, "ours"),
            "faststream_pull": lambda: measure(js, "faststream_pull"),
            "faststream_push": lambda: measure(js, "faststream_push"),
        }
        samples = await interleaved_async(cases, rounds_from_env(5), round_format="{:.0f}/s")
        # The goal is against FastStream at its best: the faster of its two set-ups, per round.
        samples["faststream_best"] = [max(pair) for pair in zip(samples["faststream_pull"], samples["faststream_push"])]
    finally:
        await js.delete_stream(STREAM)
        await nc.close()
    import statistics
    from importlib.metadata import version

    rate = {name: statistics.median(values) for name, values in samples.items()}
    report("typed-nats", {
        "events_per_measurement": EVENTS,
        "in_flight": IN_FLIGHT,
        "faststream": version("faststream"),
        "tiny_listener_events_per_s": rate["tiny_listener"],
        "faststream_pull_events_per_s": rate["faststream_pull"],
        "faststream_push_events_per_s": rate["faststream_push"],
        "ratio_vs_faststream_pull": median_ratio(samples, "tiny_listener", "faststream_pull"),
        "ratio_vs_faststream_push": median_ratio(samples, "tiny_listener", "faststream_push"),
        "ratio_vs_faststream_best": median_ratio(samples, "tiny_listener", "faststream_best"),
        "goal_ratio": 2.0,
    })


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(run())
    eprint(f"took {time.monotonic() - started:.1f}s")
