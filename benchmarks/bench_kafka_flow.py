"""What the Kafka listener adds per record, without a broker: ``KafkaListener`` consuming from
an in-memory stand-in for aiokafka's consumer, against the bare ``getmany`` loop of
``bench_kafka.py`` over the same stand-in, in the same run, round by round.

The stand-in (``MemoryConsumer``) hands out pre-built ``ConsumerRecord`` batches of 6
partitions, as ``getmany`` would, and takes commits without a network: what is measured is
what each side does with a record once aiokafka has parsed it, the part
``bench_kafka.py``'s ratio is about, without the broker's and the network's noise. The
listener runs unmodified: the stand-ins replace ``aiokafka.AIOKafkaConsumer`` and
``AIOKafkaProducer`` in this process only, and the listener reaches them through its usual
``connect()``.

Both sides decode each JSON value, call the same handler (:func:`_broker_throughput.handle`)
and commit every 1,000 records; the listener keeps partition order, up to 100 in flight. CPU
per record is this process's CPU time over the run, divided by the records; building the
records is not timed. The figure to read is ``added_cpu_us_per_event``, what the listener
costs beyond the bare loop: the ratio here is larger than ``bench_kafka.py``'s, whose bare
loop also pays aiokafka's fetching and parsing.

    python benchmarks/bench_kafka_flow.py     # BENCH_ROUNDS=5, BENCH_KAFKA_EVENTS=60000

For instruction counts (steadier than CPU time on a shared machine), run one side under
``valgrind --tool=callgrind`` with two sizes and divide the difference:
``python benchmarks/bench_kafka_flow.py --side tiny_listener`` with ``BENCH_ROUNDS=1``. Building
the records is counted there too (about 29,000 instructions per record, the same for both
sides): ``--side build_only`` builds them and does nothing else; subtract its count from each
side's before dividing one by the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any, ClassVar, Dict, Iterator, List

from _broker_throughput import handle
from _harness import eprint, report, rounds_from_env

from tiny_listener import Data
from tiny_listener.kafka import KafkaListener

PARTITIONS = 6
KEYS = 60
BATCH = 600
"""Records per ``getmany``: 100 per partition, so that a partition fills ``max_buffered``
(1,000, the default) with whole batches (the stand-in cannot seek back into one)."""
EVENTS = int(os.environ.get("BENCH_KAFKA_EVENTS", "60000")) // BATCH * BATCH
TOPIC = "orders"
COMMIT_EVERY = 1000


def batches() -> List[Dict[Any, List[Any]]]:
    """``EVENTS`` records over ``PARTITIONS`` partitions, in ``getmany`` batches of ``BATCH``."""
    from aiokafka.structs import ConsumerRecord, TopicPartition

    partitions = [TopicPartition(TOPIC, n) for n in range(PARTITIONS)]
    offsets = [0] * PARTITIONS
    found: List[Dict[Any, List[Any]]] = []
    for start in range(0, EVENTS, BATCH):
        batch: Dict[Any, List[Any]] = {}
        for n in range(start, min(start + BATCH, EVENTS)):
            partition = n % PARTITIONS
            value = json.dumps({"n": n, "amount": n % 97}).encode()
            record = ConsumerRecord(TOPIC, partition, offsets[partition], 0, 0, f"k{n % KEYS}".encode(), value,
                                    None, 3, len(value), ())
            offsets[partition] += 1
            batch.setdefault(partitions[partition], []).append(record)
        found.append(batch)
    return found


class MemoryConsumer:
    """The part of ``AIOKafkaConsumer`` the listener and the bare loop use, over in-memory
    batches (set in ``MemoryConsumer.batches`` before one is made)."""

    batches: ClassVar[List[Dict[Any, List[Any]]]] = []
    last: ClassVar[MemoryConsumer | None] = None
    """The consumer made last (the listener's), for its commits."""

    def __init__(self, *topics: str, **options: Any) -> None:
        self._batches: Iterator[Dict[Any, List[Any]]] = iter(MemoryConsumer.batches)
        self._rebalances: Any = None
        self._paused: set[Any] = set()
        self.committed: Dict[Any, int] = {}
        MemoryConsumer.last = self

    def subscribe(self, topics: Any = (), pattern: Any = None, listener: Any = None) -> None:
        self._rebalances = listener

    async def start(self) -> None:
        if self._rebalances is not None:
            await self._rebalances.on_partitions_assigned(list(MemoryConsumer.batches[0]))

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        await asyncio.sleep(0)  # a fetch is a step of the loop
        if not self._paused:  # every batch holds every partition: none while one is paused
            for batch in self._batches:
                return batch
            await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: Dict[Any, int] | None = None) -> None:
        self.committed.update(offsets or {})

    def pause(self, *partitions: Any) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: Any) -> None:
        self._paused.difference_update(partitions)

    def seek(self, partition: Any, offset: int) -> None:
        raise RuntimeError("the stand-in cannot seek: max_buffered must hold a batch")

    async def topics(self) -> set[str]:
        return {TOPIC}

    async def stop(self) -> None:
        pass


class MemoryProducer:
    def __init__(self, **options: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def use_memory_clients() -> None:
    import aiokafka

    aiokafka.AIOKafkaConsumer = MemoryConsumer
    aiokafka.AIOKafkaProducer = MemoryProducer


def expected_commits() -> Dict[Any, int]:
    ends: Dict[Any, int] = {}
    for batch in MemoryConsumer.batches:
        for partition, records in batch.items():
            ends[partition] = records[-1].offset + 1
    return ends


async def run_ours() -> float:
    """CPU microseconds per record of a ``KafkaListener`` over the stand-in."""
    done = asyncio.Event()
    handled = 0
    app: KafkaListener[Any] = KafkaListener(topics=TOPIC, group="bench", max_in_flight=100, max_retries=0,
                                            dead_letter=False, commit_batch=COMMIT_EVERY)
    app.install_signal_handlers = lambda: None  # type: ignore[method-assign]

    @app.on_event(TOPIC)
    async def item(n: Data, amount: Data) -> int:
        nonlocal handled
        result = await handle(n, amount)
        handled += 1
        if handled == EVENTS:
            done.set()
        return result

    started = time.process_time()
    task = asyncio.create_task(app.main())
    await done.wait()
    cpu = time.process_time() - started
    app.stop()
    await task
    committed = MemoryConsumer.last.committed if MemoryConsumer.last is not None else None
    if committed != expected_commits():
        raise RuntimeError(f"the listener committed {committed}")
    return cpu / EVENTS * 1e6


async def run_bare() -> float:
    """CPU microseconds per record of the bare loop of ``bench_kafka.py`` over the stand-in."""
    consumer = MemoryConsumer()
    handled: Dict[Any, int] = {}
    count = since_commit = 0
    started = time.process_time()
    while count < EVENTS:
        batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
        for partition, records in batch.items():
            for record in records:
                data = json.loads(record.value)
                await handle(data["n"], data["amount"])
                count += 1
            handled[partition] = records[-1].offset + 1
            since_commit += len(records)
        if since_commit >= COMMIT_EVERY:
            await consumer.commit(handled)
            since_commit = 0
    await consumer.commit(handled)
    cpu = time.process_time() - started
    if consumer.committed != expected_commits():
        raise RuntimeError(f"the bare loop committed {consumer.committed}")
    return cpu / EVENTS * 1e6


async def run_build_only() -> float:
    """Nothing: the records were built by :func:`run` (for instruction counts, see above)."""
    return 0.0


SIDES = {"tiny_listener": run_ours, "bare": run_bare, "build_only": run_build_only}


async def run(sides: List[str]) -> None:
    rounds = rounds_from_env(5)
    use_memory_clients()
    MemoryConsumer.batches = batches()  # not timed
    samples: Dict[str, List[float]] = {side: [] for side in sides}
    for round_number in range(rounds):
        for side in sides:
            samples[side].append(await SIDES[side]())
        eprint(f"round {round_number + 1}: "
               + ", ".join(f"{side}={values[-1]:.2f}us" for side, values in samples.items()))
    figures: Dict[str, Any] = {"events_per_measurement": EVENTS, "partitions": PARTITIONS}
    for side, values in samples.items():
        figures[f"{side}_cpu_us_per_event"] = statistics.median(values)
    if "tiny_listener" in samples and "bare" in samples:
        pairs = list(zip(samples["tiny_listener"], samples["bare"]))
        figures["added_cpu_us_per_event"] = statistics.median(ours - bare for ours, bare in pairs)
        figures["cpu_per_event_vs_bare"] = statistics.median(ours / bare for ours, bare in pairs)
    report("kafka_flow", figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", action="append", choices=sorted(SIDES), help="only this side (repeat it)")
    arguments = parser.parse_args()
    started = time.monotonic()
    asyncio.run(run(arguments.side or ["tiny_listener", "bare"]))
    eprint(f"took {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
