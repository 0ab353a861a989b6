"""Redis Streams throughput: events/s of one and of two ``tiny-listener`` worker processes in
one consumer group (their ratio is the scale-out), against a bare redis-py loop
(XREADGROUP COUNT 100, decode, call the handler, one XACK per batch) doing the same work, in
one and two processes, measured round by round in the same run.

Each measurement fills a new stream with the events first, starts the workers on a group
positioned at the end of the stream, waits until every worker has joined, then moves the
group to the start (XGROUP SETID) and times until every event is delivered and acknowledged.
Process start-up is not timed. Needs Redis on 127.0.0.1:6379 (or BENCH_REDIS_URL).

    python benchmarks/bench_redis.py            # BENCH_ROUNDS=3, BENCH_REDIS_EVENTS=20000
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

from _broker_throughput import handle  # the work every event costs, both sides
from _harness import eprint, now, report, rounds_from_env

from tiny_listener import Data, Param
from tiny_listener.redis import RedisPublisher, RedisStreamListener

HERE = Path(__file__).resolve().parent
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STREAM = os.environ.get("BENCH_REDIS_STREAM", "bench:redis")
GROUP = "bench"
BATCH = 100
EVENTS = int(os.environ.get("BENCH_REDIS_EVENTS", "20000"))


# ---------------------------------------------------------------- tiny-listener worker

app: RedisStreamListener[Any] = RedisStreamListener(URL, streams=[STREAM], group=GROUP, max_in_flight=BATCH,
                                                    claim_idle=600)


@app.on_event("item:{n:int}")
async def item(n: Param, amount: Data) -> int:
    return await handle(n, amount)


# ---------------------------------------------------------------- bare redis-py worker

async def bare_worker() -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(URL)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = f"bare-{os.getpid()}"
    await client.xgroup_createconsumer(STREAM, GROUP, consumer)  # a read that times out would not
    try:
        while not stop.is_set():
            reply = await client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=BATCH, block=100)
            for _, entries in reply or ():
                ids = []
                for message_id, fields in entries:
                    n = int(fields[b"path"].decode().split(":")[1])
                    data = json.loads(fields[b"data"])
                    await handle(n, data["amount"])
                    ids.append(message_id)
                await client.xack(STREAM, GROUP, *ids)
    finally:
        await client.aclose()


# ---------------------------------------------------------------- driver

def worker_command(kind: str) -> List[str]:
    if kind == "bare":
        return [sys.executable, str(HERE / "bench_redis.py"), "--bare-worker"]
    return [sys.executable, "-m", "tiny_listener", "--app-dir", str(HERE), "--log-level", "warning", "bench_redis:app"]


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_seconds(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Measurement:
    """Events/s of one run, and the CPU time per event its workers and Redis used."""

    def __init__(self, rate: float, worker_cpu_us: float, redis_cpu_us: float) -> None:
        self.rate = rate
        self.worker_cpu_us = worker_cpu_us
        self.redis_cpu_us = redis_cpu_us


async def measure(client: Any, kind: str, workers: int) -> Measurement:
    """Measure ``workers`` processes of ``kind`` handling every event of a fresh stream."""
    stream = f"bench:redis:{uuid.uuid4().hex[:8]}"
    async with RedisPublisher(client=client) as publisher:
        ids = await publisher.publish_many(stream, [(f"item:{n}", {"amount": n % 97}) for n in range(EVENTS)])
    last_id = ids[-1]
    await client.xgroup_create(stream, GROUP, id="$")
    env = {**os.environ, "BENCH_REDIS_STREAM": stream}
    logs = os.environ.get("BENCH_REDIS_WORKER_LOGS")  # a directory: keep the workers' stderr there
    procs = []
    for index in range(workers):
        log_path = os.path.join(logs, f"{stream}-{kind}-{index}.log") if logs else None
        stderr = open(log_path, "wb") if log_path else None  # noqa: ASYNC230 - once, before timing
        procs.append(await asyncio.create_subprocess_exec(*worker_command(kind), env=env, stderr=stderr))
    try:
        # Other processes starting: there is nothing to await but what Redis says.
        while len(await client.xinfo_consumers(stream, GROUP)) < workers:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        cpu_before = sum(process_cpu_seconds(proc.pid) for proc in procs)
        redis_before = await redis_cpu_seconds(client)
        start = now()
        await client.xgroup_setid(stream, GROUP, id="0")
        while True:
            [group] = await client.xinfo_groups(stream)
            if group["last-delivered-id"] == last_id and group["pending"] == 0:
                break
            await asyncio.sleep(0.002)
        elapsed = now() - start
        cpu = sum(process_cpu_seconds(proc.pid) for proc in procs) - cpu_before
        redis_cpu = await redis_cpu_seconds(client) - redis_before
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await proc.wait()
        await client.delete(stream)
    return Measurement(EVENTS / elapsed, cpu / EVENTS * 1e6, redis_cpu / EVENTS * 1e6)


async def run() -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(URL)
    rounds = rounds_from_env(3)
    cases = {"tiny_listener_1": ("ours", 1), "tiny_listener_2": ("ours", 2), "bare_1": ("bare", 1),
             "bare_2": ("bare", 2)}
    runs: Dict[str, List[Measurement]] = {name: [] for name in cases}
    try:
        await measure(client, "ours", 1)  # warm-up: imports, page cache
        for round_number in range(rounds):
            for name, (kind, workers) in cases.items():
                runs[name].append(await measure(client, kind, workers))
            eprint(f"round {round_number + 1}: " + ", ".join(f"{k}={v[-1].rate:.0f}/s" for k, v in runs.items()))
    finally:
        await client.aclose()
    samples = {name: [run.rate for run in values] for name, values in runs.items()}
    rate = {name: statistics.median(values) for name, values in samples.items()}
    worker_cpu = {name: statistics.median(run.worker_cpu_us for run in values) for name, values in runs.items()}
    redis_cpu = {name: statistics.median(run.redis_cpu_us for run in values) for name, values in runs.items()}
    scale_out = statistics.median(b / a for a, b in zip(samples["tiny_listener_1"], samples["tiny_listener_2"]))
    bare_scale = statistics.median(b / a for a, b in zip(samples["bare_1"], samples["bare_2"]))
    cost = statistics.median(b / a for a, b in zip(samples["tiny_listener_1"], samples["bare_1"]))
    report("redis-streams", {
        "events_per_measurement": EVENTS,
        "cpus": os.cpu_count(),
        "tiny_listener_1_worker_events_per_s": rate["tiny_listener_1"],
        "tiny_listener_2_workers_events_per_s": rate["tiny_listener_2"],
        "scale_out_2_workers_over_1": scale_out,
        "bare_1_worker_events_per_s": rate["bare_1"],
        "bare_2_workers_events_per_s": rate["bare_2"],
        "bare_scale_out_2_over_1": bare_scale,
        "tiny_listener_us_per_event": 1e6 / rate["tiny_listener_1"],
        "bare_us_per_event": 1e6 / rate["bare_1"],
        "cost_per_event_ratio_vs_bare": cost,
        "tiny_listener_worker_cpu_us_per_event": worker_cpu["tiny_listener_1"],
        "bare_worker_cpu_us_per_event": worker_cpu["bare_1"],
        "worker_cpu_ratio_vs_bare": worker_cpu["tiny_listener_1"] / worker_cpu["bare_1"],
        "redis_cpu_us_per_event_1_worker": redis_cpu["tiny_listener_1"],
        "redis_cpu_us_per_event_bare_1": redis_cpu["bare_1"],
    })


if __name__ == "__main__":
    if "--bare-worker" in sys.argv:
        asyncio.run(bare_worker())
    else:
        started = time.monotonic()
        asyncio.run(run())
        eprint(f"took {time.monotonic() - started:.1f}s")
