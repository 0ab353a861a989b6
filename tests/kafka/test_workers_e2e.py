"""End to end: ``tiny-listener`` worker processes in one consumer group on the session's Tansu
broker. Every event is handled at least once whatever happens to the workers (SIGKILL, a worker
joining, one leaving with SIGTERM); per key, events are first handled in the order they were
published; poison and undecodable records are dead-lettered with their reason; SIGTERM drains,
commits and exits 0. Duplicates (records a killed worker handled but never committed) are
counted and reported."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Tuple

import pytest

from tests.kafka.conftest import Tansu, Topics, read_topic

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 10_000
PARTITIONS = 6
KEYS = 60


def worker_command() -> List[str]:
    script = Path(sys.executable).with_name("tiny-listener")
    if not script.exists():
        found = shutil.which("tiny-listener")
        script = Path(found) if found else script
    if not script.exists():
        return [sys.executable, "-m", "tiny_listener", "--app-dir", str(ROOT), "tests.kafka.workers_app:app"]
    return [str(script), "--app-dir", str(ROOT), "--log-level", "info", "tests.kafka.workers_app:app"]


class Handled:
    """What the workers wrote: one line per handled event, ``n key started_ns finished_ns``."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def lines(self) -> List[Tuple[int, str, int]]:
        found = []
        for path in self.out.glob("worker-*.txt"):
            text = path.read_text()
            # Whole lines only: the last one can be half written when it crosses a page boundary
            # (a file grows a page at a time): its worker is writing it, or was killed doing so.
            for line in text[: text.rfind("\n") + 1].splitlines():
                n, key, started, _ = line.split()
                found.append((int(n), key, int(started)))
        return found

    def count(self) -> int:
        return sum(path.read_text().count("\n") for path in self.out.glob("worker-*.txt"))

    def by_worker(self) -> Dict[str, int]:
        return {path.stem: path.read_text().count("\n") for path in self.out.glob("worker-*.txt")}


class Workers:
    """``tiny-listener tests.kafka.workers_app:app`` processes; those still running at the end
    are killed."""

    def __init__(self, env: Dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: List[asyncio.subprocess.Process] = []

    async def start(self) -> asyncio.subprocess.Process:
        log = self.logs / f"worker{len(self.processes)}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(*worker_command(), cwd=ROOT, env=self.env, stdout=out,
                                                           stderr=out)
        self.processes.append(process)
        return process

    def log_of(self, process: asyncio.subprocess.Process) -> str:
        return (self.logs / f"worker{self.processes.index(process)}.log").read_text()

    async def stop(self, process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
        process.send_signal(sig)
        return await asyncio.wait_for(process.wait(), 60)

    async def end_all(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds: the workers are other processes, there is nothing to await."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Ends:
    """The end offset of each partition, from the offsets of the records published (Tansu's
    ListOffsets answers the first offset of a partition's last batch, not its end)."""

    def __init__(self) -> None:
        self.offsets = [0] * PARTITIONS

    def add(self, futures: List[Any]) -> None:
        for future in futures:
            metadata = future.result()
            self.offsets[metadata.partition] = max(self.offsets[metadata.partition], metadata.offset + 1)


async def publish(producer: Any, topic: str, numbers: range, ends: Ends, pause_every: int = 0) -> None:
    """Publish events ``numbers`` with key ``k<n % KEYS>``; with ``pause_every``, yield to the
    loop between chunks so that the stream is spread over time."""
    futures = []
    for n in numbers:
        futures.append(await producer.send(topic, json.dumps({"n": n}).encode(), key=f"k{n % KEYS}".encode()))
        if pause_every and n % pause_every == 0:
            await producer.flush()
            await asyncio.sleep(0.02)
    await producer.flush()
    ends.add(futures)


async def all_committed(tansu: Tansu, group: str, topic: str, ends: Ends) -> bool:
    """True once the group committed every partition up to its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(topic, n)) for n in range(PARTITIONS)]
    finally:
        await consumer.stop()
    return committed == ends.offsets


def first_processing_in_key_order(lines: List[Tuple[int, str, int]]) -> List[str]:
    """The keys whose events were first handled out of publishing order (empty: order kept)."""
    first: Dict[int, Tuple[int, str]] = {}
    for n, key, started in lines:
        if n not in first or started < first[n][0]:
            first[n] = (started, key)
    by_key: Dict[str, List[Tuple[int, int]]] = {}
    for n, (started, key) in first.items():
        by_key.setdefault(key, []).append((started, n))
    return [key for key, events in by_key.items() if [n for _, n in sorted(events)] != sorted(n for _, n in events)]


@pytest.fixture
def setup(tansu: Tansu, topics: Topics, tmp_path: Path) -> Tuple[Dict[str, str], str, str, Path]:
    topic, group = topics.name("orders"), topics.name("workers")
    out = tmp_path / "handled"
    out.mkdir()
    env = {**os.environ, "TL_KAFKA_URL": tansu.url, "TL_KAFKA_TOPIC": topic, "TL_KAFKA_GROUP": group,
           "TL_KAFKA_OUT": str(out), "PYTHONPATH": str(ROOT)}
    return env, topic, group, out


async def test_three_workers_one_killed_nothing_lost(
    tansu: Tansu, topics: Topics, producer: Any, setup: Any, tmp_path: Path, record_property: Any
) -> None:
    env, topic, group, out = setup
    await topics.create(topic, partitions=PARTITIONS)
    handled = Handled(out)
    workers = Workers(env, tmp_path)
    ends = Ends()
    try:
        for _ in range(3):
            await workers.start()
        await publish(producer, topic, range(EVENTS // 2), ends)
        await until(lambda: handled.count() >= EVENTS // 5, "a fifth of the events to be handled")
        # Kill the worker that handled the most so far: it is busy, with records in flight.
        busiest = max(handled.by_worker().items(), key=lambda item: item[1])[0]
        victim = next(p for p in workers.processes if busiest == f"worker-{p.pid}")
        killed_at = handled.count()
        await workers.stop(victim, signal.SIGKILL)
        await publish(producer, topic, range(EVENTS // 2, EVENTS), ends)
        await until(lambda: len({n for n, _, _ in handled.lines()}) >= EVENTS, "every event to be handled", 80)

        await until(lambda: all_committed(tansu, group, topic, ends), "every offset to be committed", 30)
        survivors = [p for p in workers.processes if p is not victim]
        exit_codes = [await workers.stop(p) for p in survivors]
    finally:
        await workers.end_all()
    lines = handled.lines()
    counts: Dict[int, int] = {}
    for n, _, _ in lines:
        counts[n] = counts.get(n, 0) + 1
    duplicates = len(lines) - len(counts)
    record_property("duplicates", duplicates)
    print(f"\n{EVENTS} events, {PARTITIONS} partitions, 3 workers, one SIGKILLed after {killed_at} were handled: "
          f"0 lost, {duplicates} duplicate(s)")
    assert sorted(counts) == list(range(EVENTS)), "an event was lost"
    assert exit_codes == [0, 0], [workers.log_of(p)[-3000:] for p in survivors]
    assert not first_processing_in_key_order(lines)


async def test_a_worker_joins_and_one_leaves_under_load(
    tansu: Tansu, topics: Topics, producer: Any, setup: Any, tmp_path: Path, record_property: Any
) -> None:
    env, topic, group, out = setup
    poison = [123, 4567, 8901]
    env = {**env, "TL_KAFKA_POISON": ",".join(map(str, poison)), "TL_KAFKA_WORK": "0.004"}
    await topics.create(topic, partitions=PARTITIONS)
    handled = Handled(out)
    workers = Workers(env, tmp_path)
    ends = Ends()
    try:
        first = [await workers.start() for _ in range(3)]
        publishing = asyncio.create_task(publish(producer, topic, range(EVENTS), ends, pause_every=200))
        # Undecodable records among the events, on their own key.
        garbage = [await producer.send(topic, b"\xffnot json %d" % n, key=b"garbage") for n in range(3)]
        await producer.flush()
        ends.add(garbage)
        await until(lambda: handled.count() >= EVENTS // 5, "a fifth of the events to be handled")
        joiner = await workers.start()
        await until(lambda: handled.count() >= EVENTS // 2, "half of the events to be handled")
        leaver = first[0]
        left_with = await workers.stop(leaver)
        await publishing
        expected = set(range(EVENTS)) - set(poison)
        await until(lambda: {n for n, _, _ in handled.lines()} >= expected, "every event to be handled", 80)
        dead = await read_topic(tansu.bootstrap, f"{topic}.dead", len(poison) + 3, timeout=30)

        await until(lambda: all_committed(tansu, group, topic, ends), "every offset to be committed", 30)
        exit_codes = [await workers.stop(p) for p in [*first[1:], joiner]]
        leaver_log = workers.log_of(leaver)
    finally:
        await workers.end_all()
    lines = handled.lines()
    duplicates = len(lines) - len({n for n, _, _ in lines})
    record_property("duplicates", duplicates)
    print(f"\n{EVENTS} events, {PARTITIONS} partitions, 3 workers, a 4th joining and one leaving (SIGTERM): "
          f"0 lost, {duplicates} duplicate(s)")
    assert {n for n, _, _ in lines} == set(range(EVENTS)) - set(poison)
    assert first_processing_in_key_order(lines) == []
    assert left_with == 0, leaver_log[-3000:]
    assert exit_codes == [0, 0, 0]
    reasons = {}
    for record in dead:
        headers = dict(record.headers)
        reasons[record.value] = headers["x-dead-letter-reason"].decode()
    assert {json.loads(value)["n"]: reason for value, reason in reasons.items() if not value.startswith(b"\xff")} == {
        n: "handler-failed" for n in poison
    }
    assert sorted(value for value in reasons if value.startswith(b"\xff")) == [b"\xffnot json %d" % n for n in range(3)]
    assert {reasons[b"\xffnot json %d" % n] for n in range(3)} == {"undecodable"}
