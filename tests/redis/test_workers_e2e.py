"""End to end: three ``tiny-listener`` worker processes in one group, 10,000 events, one worker
killed with SIGKILL mid-run; every event is handled at least once, none is lost, nothing is
dead-lettered. Duplicates (events the killed worker handled but never acknowledged) are counted
and reported."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, List

import pytest

from tests.redis.conftest import StreamNames
from tiny_listener.redis import RedisPublisher

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 10_000
WORKERS = 3
GROUP = "e2e-workers"


def worker_command() -> List[str]:
    script = Path(sys.executable).with_name("tiny-listener")
    if not script.exists():
        found = shutil.which("tiny-listener")
        script = Path(found) if found else script
    if not script.exists():
        return [sys.executable, "-m", "tiny_listener", "--app-dir", str(ROOT), "tests.redis.workers_app:app"]
    return [str(script), "--app-dir", str(ROOT), "--log-level", "warning", "tests.redis.workers_app:app"]


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Poll Redis until ``condition()`` holds: the workers are other processes, nothing to await."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_three_workers_one_killed_every_event_handled(
    redis_url: str, names: StreamNames, redis: Any, tmp_path: Path, record_property: Any
) -> None:
    stream = names("orders")
    handled_key = f"{stream}:handled"
    names("orders:handled")
    names("orders:dead")
    env = {**os.environ, "TL_E2E_URL": redis_url, "TL_E2E_STREAM": stream, "TL_E2E_GROUP": GROUP,
           "TL_E2E_CLAIM_IDLE": "1.0", "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / f"worker{i}.log" for i in range(WORKERS)]
    workers: List[asyncio.subprocess.Process] = []
    try:
        for log in logs:
            with log.open("wb") as out:
                workers.append(await asyncio.create_subprocess_exec(
                    *worker_command(), cwd=ROOT, env=env, stdout=out, stderr=out))

        async def all_joined() -> bool:
            if not await redis.exists(stream):
                return False
            groups = await redis.xinfo_groups(stream)
            return bool(groups) and len(await redis.xinfo_consumers(stream, GROUP)) == WORKERS

        await until(all_joined, "three workers to join the group", timeout=30)

        async def handled_at_least(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return int(await redis.hlen(handled_key)) >= count
            return check

        async with RedisPublisher(redis_url) as publisher:
            await publisher.publish_many(stream, [(f"item:{n}", None) for n in range(EVENTS // 2)])
            await until(await handled_at_least(EVENTS // 5), "a fifth of the events to be handled")
            # Kill the worker holding the most unacknowledged messages right now, so that the
            # kill always leaves work behind (a worker that happens to be idle tests nothing).
            busiest: List[Any] = []

            async def someone_busy() -> bool:
                consumers = await redis.xinfo_consumers(stream, GROUP)
                busiest[:] = sorted(consumers, key=lambda consumer: consumer["pending"], reverse=True)[:1]
                return bool(busiest) and busiest[0]["pending"] > 0

            await until(someone_busy, "a worker with messages in flight", timeout=30)
            victim_name = busiest[0]["name"].decode()
            victim = next(worker for worker in workers if victim_name.endswith(f"-{worker.pid}"))
            victim.send_signal(signal.SIGKILL)
            await asyncio.wait_for(victim.wait(), timeout=10)
            # Read right away: the others claim these only after claim_idle (1 s).
            left_pending = len(await redis.xpending_range(
                stream, GROUP, min="-", max="+", count=EVENTS, consumername=victim_name))
            await publisher.publish_many(stream, [(f"item:{n}", None) for n in range(EVENTS // 2, EVENTS)])

        async def all_done() -> bool:
            if int(await redis.hlen(handled_key)) < EVENTS:
                return False
            return int((await redis.xpending(stream, GROUP))["pending"]) == 0

        await until(all_done, "every event to be handled and acknowledged", timeout=90)

        survivors = [worker for worker in workers if worker is not victim]
        for worker in survivors:
            worker.send_signal(signal.SIGTERM)
        exit_codes = [await asyncio.wait_for(worker.wait(), timeout=30) for worker in survivors]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()

    counts = {int(key): int(value) for key, value in (await redis.hgetall(handled_key)).items()}
    duplicates = sum(counts.values()) - len(counts)
    record_property("duplicates", duplicates)
    record_property("left_pending_by_killed_worker", left_pending)
    print(f"\n{EVENTS} events, {WORKERS} workers, one SIGKILLed with {left_pending} message(s) pending: "
          f"{duplicates} duplicate(s)")
    assert sorted(counts) == list(range(EVENTS)), "an event was lost"
    assert await redis.xlen(f"{stream}:dead") == 0
    assert left_pending > 0, "the killed worker had nothing in flight: the kill tested nothing"
    assert exit_codes == [0, 0], [log.read_text()[-2000:] for log, w in zip(logs, workers) if w is not victim]
