"""Memory retained once idle after 100,000 events: each in a fresh anonymous context (never
dropped), then all in one long-lived context. Goal: under 100 bytes per event for both.

    python benchmarks/bench_memory.py [--events N]
"""

import asyncio
import gc
import sys
import tracemalloc
from typing import Any, List

from _harness import report

from tiny_listener import Data, Listener, Param


def make_app() -> Any:
    app: Any = Listener()

    @app.on_event("user:{name}")
    async def handler(name: Param, amount: Data) -> Any:
        if name is None:
            raise AssertionError("injection failed")
        return amount

    return app


def retained_per_event(events: int, cid: Any) -> float:
    app = make_app()

    async def run() -> None:
        # Warm up what is allocated once (route cache, history list, code paths).
        for i in range(1_000):
            await app.trigger_event(f"user:u{i % 100}", cid=cid, data={"amount": i})
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(events):
            await app.trigger_event(f"user:u{i % 100}", cid=cid, data={"amount": i})
        await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        result.append((after - before) / events)

    result: List[float] = []
    asyncio.run(run())
    return result[0]


def main() -> None:
    events = int(sys.argv[sys.argv.index("--events") + 1]) if "--events" in sys.argv else 100_000
    report(
        "memory",
        {
            "events": events,
            "anonymous_contexts_bytes_per_event": retained_per_event(events, None),
            "one_context_bytes_per_event": retained_per_event(events, "long-lived"),
            "goal_bytes_per_event_under": 100,
        },
    )


if __name__ == "__main__":
    main()
