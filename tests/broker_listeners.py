"""Steps shared by the tests of the AMQP and NATS listeners, which have the same surface:
``main()``, ``wait_connected()``, ``stop()``, ``publish(path, data)`` and ``max_in_flight``.

Each helper drives one listener through the public API and returns what it observed; the
tests keep their assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, List, Tuple

from tiny_listener import Param


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app.main()`` in a task until the block ends, then stop it and wait for it."""
    task = asyncio.create_task(app.main())
    try:
        await asyncio.wait_for(app.wait_connected(), 20)
        yield task
    finally:
        app.stop()
        await asyncio.wait_for(task, 60)


async def peak_in_flight(app: Any, route: str, path: Callable[[int], str], *, hold_until: int) -> int:
    """Publish ten events to ``route`` (event ``n`` at ``path(n)``), hold their handlers until
    ``hold_until`` of them run at once, then let all finish; returns the most that ran at once."""
    total = 10
    running_now = 0
    peak = 0
    finished = 0
    enough_in = asyncio.Event()
    release = asyncio.Event()
    all_done = asyncio.Event()

    @app.on_event(route)
    async def job(n: Param) -> None:
        nonlocal running_now, peak, finished
        running_now += 1
        peak = max(peak, running_now)
        if running_now == hold_until:
            enough_in.set()
        await release.wait()
        running_now -= 1
        finished += 1
        if finished == total:
            all_done.set()

    async with running(app):
        for n in range(total):
            await app.publish(path(n), {})
        await asyncio.wait_for(enough_in.wait(), 10)
        # "No further message starts" has no event to await: give a listener whose limit is
        # too high a moment to start one more, so that the peak shows it.
        await asyncio.sleep(0.3)
        release.set()
        await asyncio.wait_for(all_done.wait(), 10)
    return peak


async def stop_with_two_in_flight(app: Any, route: str, path: Callable[[int], str]) -> Tuple[List[int], List[int]]:
    """Publish five events to ``route`` (event ``n`` at ``path(n)``) and stop ``app`` once two
    handlers are running; they are held until the shutdown hooks run. Returns the numbers whose
    handlers started, and those whose handlers finished."""
    started: List[int] = []
    handled: List[int] = []
    two_in = asyncio.Event()
    release = asyncio.Event()

    @app.shutdown
    async def release_handlers() -> None:
        # Shutdown hooks run once listen() has stopped: no more messages come in by now.
        release.set()

    @app.on_event(route)
    async def job(n: Param) -> None:
        started.append(n)
        if len(started) == 2:
            two_in.set()
        await release.wait()
        handled.append(n)

    task = asyncio.create_task(app.main())
    await asyncio.wait_for(app.wait_connected(), 20)
    for n in range(5):
        await app.publish(path(n), {})
    await asyncio.wait_for(two_in.wait(), 10)
    app.stop()
    await asyncio.wait_for(task, 30)
    return started, handled
