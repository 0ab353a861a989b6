"""The parts the broker throughput benchmarks (bench_amqp, bench_nats, bench_redis) share: the
work every event costs on both sides, and the timing of a listener until it has handled
every event."""

from __future__ import annotations

import asyncio
from typing import Any

from _harness import now

from tiny_listener import Data, Param


async def handle(n: int, amount: int) -> int:
    """What every event costs its handler: a little arithmetic, no I/O."""
    return (n * 31 + amount) % 1_000_003


async def listener_rate(app: Any, route: str, events: int) -> float:
    """Events/s of ``app`` (an AMQP or NATS listener whose queue or stream already holds
    ``events`` events at ``route``), timed from starting it until its handler, calling
    :func:`handle`, has run for every event; the listener is then stopped."""
    done = asyncio.Event()
    handled = 0

    @app.on_event(route)
    async def item(n: Param, amount: Data) -> int:
        nonlocal handled
        result = await handle(n, amount)
        handled += 1
        if handled == events:
            done.set()
        return result

    start = now()
    task = asyncio.create_task(app.main())
    await done.wait()
    elapsed = now() - start
    app.stop()
    await task
    return events / elapsed
