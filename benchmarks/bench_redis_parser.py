"""Does hiredis pay for redis-py? CPU per entry read by redis-py's asyncio client (XRANGE COUNT 100 over a 20,000-entry
stream, fields path/data as the Redis listener reads them), with hiredis and with redis-py's
own Python parser, alternated over rounds, in one process. Needs Redis on 127.0.0.1:6379 and hiredis installed.

    python benchmarks/bench_redis_parser.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import redis.asyncio
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

URL = "redis://127.0.0.1:6379/0"
N = 20000

async def read_all(client: Any, stream: str) -> float:
    last = "-"
    count = 0
    start = time.process_time()
    while True:
        entries = await client.xrange(stream, min=last, count=101)
        if last != "-":
            entries = entries[1:]
        if not entries:
            break
        for _id, fields in entries:
            json.loads(fields[b"data"])
            count += 1
        last = entries[-1][0]
    return (time.process_time() - start) / count * 1e6

async def main() -> None:
    setup = redis.asyncio.from_url(URL)
    stream = f"bench:hiredis:{uuid.uuid4().hex[:8]}"
    try:
        pipe = setup.pipeline(transaction=False)
        for n in range(N):
            pipe.xadd(stream, {"path": f"item:{n}", "data": json.dumps({"amount": n % 97})})
        await pipe.execute()
        parsers = (("hiredis", _AsyncHiredisParser), ("python", _AsyncRESP2Parser))
        pools = {name: redis.asyncio.ConnectionPool.from_url(URL, parser_class=cls) for name, cls in parsers}
        clients = {name: redis.asyncio.Redis(connection_pool=pool) for name, pool in pools.items()}
        samples: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(7):
            for name, client in clients.items():
                samples[name].append(await read_all(client, stream))
        for name, values in samples.items():
            print(f"{name}: {statistics.median(values):.2f} us CPU per entry read")
        ratio = statistics.median(p / h for p, h in zip(samples["python"], samples["hiredis"]))
        print(f"python/hiredis per round (median): {ratio:.2f}x")
        for client in clients.values():
            await client.aclose()
    finally:
        await setup.delete(stream)
        await setup.aclose()

if __name__ == "__main__":
    asyncio.run(main())
