"""RabbitMQ throughput: events/s of an ``AMQPListener`` against a bare aio-pika consumer doing
the same work (read the path header, decode the JSON body, call the handler, ack), with the
same prefetch, measured round by round in the same run and process.

Each measurement fills a new durable queue with the events first (not timed), then times
from connecting until every event has been handled; the queue is checked empty (every event
acknowledged) and deleted afterwards. Needs RabbitMQ on 127.0.0.1:5672 (or BENCH_AMQP_URL).

    python benchmarks/bench_amqp.py            # BENCH_ROUNDS=3, BENCH_AMQP_EVENTS=10000
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

from tiny_listener.amqp import EVENT_PATH, AMQPListener

URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
EVENTS = int(os.environ.get("BENCH_AMQP_EVENTS", "10000"))
PREFETCH = 100


async def fill(channel: Any, queue: str) -> None:
    import aio_pika

    await channel.declare_queue(queue, durable=True)
    for start in range(0, EVENTS, 500):
        await asyncio.gather(*(
            channel.default_exchange.publish(
                aio_pika.Message(json.dumps({"amount": n % 97}).encode(), headers={EVENT_PATH: f"item.{n}"}),
                routing_key=queue,
            )
            for n in range(start, min(start + 500, EVENTS))
        ))


async def run_bare(queue: str) -> float:
    import aio_pika

    done = asyncio.Event()
    handled = 0

    async def on_message(message: Any) -> None:
        nonlocal handled
        n = int(message.headers[EVENT_PATH].split(".")[1])
        data = json.loads(message.body)
        await handle(n, data["amount"])
        await message.ack()
        handled += 1
        if handled == EVENTS:
            done.set()

    start = now()
    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        declared = await channel.declare_queue(queue, durable=True)
        await declared.consume(on_message)
        await done.wait()
        elapsed = now() - start
    return EVENTS / elapsed


async def run_ours(queue: str) -> float:
    app: AMQPListener[Any] = AMQPListener(URL, queue=queue, max_in_flight=PREFETCH, max_retries=0,
                                          dead_letter=False)
    return await listener_rate(app, "item.{n:int}", EVENTS)


async def measure(kind: str) -> float:
    import aio_pika

    queue = f"bench-amqp-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        await fill(channel, queue)
        try:
            rate = await (run_ours(queue) if kind == "ours" else run_bare(queue))
            left = (await channel.declare_queue(queue, passive=True)).declaration_result.message_count
            if left:
                raise RuntimeError(f"{left} message(s) left unacknowledged by {kind}")
        finally:
            await channel.queue_delete(queue)
    return rate


async def run() -> None:
    cases = {"tiny_listener": lambda: measure("ours"), "bare": lambda: measure("bare")}
    # One unrecorded measurement of ours first, as a warm-up: imports, broker caches.
    samples = await interleaved_async(cases, rounds_from_env(3), warm_up=["tiny_listener"], round_format="{:.0f}/s")
    report("amqp", {
        "events_per_measurement": EVENTS,
        "prefetch": PREFETCH,
        **throughput_figures(samples, "aio_pika"),
    })


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(run())
    eprint(f"took {time.monotonic() - started:.1f}s")
