"""How soon ``wait_event_done`` wakes after the awaited event finished (1.2 polls every 0.5 s).

python benchmarks/bench_waiting.py
"""

import asyncio
import statistics
from typing import Any, List

from _harness import is_legacy, now, report

from tiny_listener import Event, Listener


def main() -> None:
    app: Any = Listener()
    finished_at: List[float] = []
    woke_at: List[float] = []

    @app.on_event("work")
    async def work() -> None:
        await asyncio.sleep(0.001)
        finished_at.append(now())

    waiting: List[asyncio.Event] = []

    @app.on_event("watch")
    async def watch(event: Event) -> None:
        waiting[-1].set()
        await event.wait_event_done("work", n=1, timeout=5)
        woke_at.append(now())

    iterations = 6 if is_legacy() else 300

    async def run() -> None:
        for i in range(iterations):
            cid = f"c{i}"
            app.new_ctx(cid)
            waiting.append(asyncio.Event())
            watcher = app.trigger_event("watch", cid=cid)
            await waiting[-1].wait()  # the watcher is about to wait: the work starts after
            await asyncio.sleep(0)
            await app.trigger_event("work", cid=cid)
            await watcher

    asyncio.run(run())
    latencies = [(woke - done) * 1e3 for woke, done in zip(woke_at, finished_at)]
    report(
        "waiting",
        {
            "iterations": iterations,
            "wake_latency_median_ms": statistics.median(latencies),
            "wake_latency_max_ms": max(latencies),
            "goal_ms_at_most": 1.0,
        },
    )


if __name__ == "__main__":
    main()
