"""Dispatch cost: ``trigger_event`` + a handler with two ``Param`` and one ``Data``, awaited,
against a bare ``asyncio.create_task(handler(...))`` awaited in the same run.

Runs against this tiny-listener or 1.2 (``run_all.py`` runs it under both). Paths cycle over
1,000 distinct values, as user ids in a URL would; ``--unique`` makes every path new.

    python benchmarks/bench_dispatch.py

No ``from __future__ import annotations`` here: 1.2 cannot resolve string annotations.
"""

import asyncio
import sys
from typing import Any, Callable, Dict, List

from _harness import interleaved, median_ratio, now, report, rounds_from_env

from tiny_listener import Data, Listener, Param

BATCH = 5_000


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:  # pragma: no cover - never run
        pass


def make_app() -> Listener:  # type: ignore[type-arg]
    app = App()

    @app.on_event("user:{name}:{order:int}")
    async def handler(name: Param, order: Param, amount: Data) -> Any:
        # Fails loudly if injection did not happen (as with string annotations on 1.2).
        if not isinstance(order, int) or name is None:
            raise AssertionError(f"injection failed: {name!r} {order!r}")
        return amount

    @app.on_event()
    async def fallback() -> None:
        pass

    return app


async def bare_handler(name: str, order: int, amount: Any) -> Any:
    return amount


def main() -> None:
    unique = "--unique" in sys.argv
    rounds = rounds_from_env(20)
    app = make_app()
    distinct = BATCH if unique else 1_000
    counter = [0]

    def paths() -> List[str]:
        base = counter[0]
        counter[0] += BATCH if unique else 0
        return [f"user:u{(base + i) % distinct}:{(base + i) % distinct}" for i in range(BATCH)]

    async def run() -> None:
        async def bare_case() -> float:
            start = now()
            for i in range(BATCH):
                await asyncio.create_task(bare_handler("u", i, 1))
            return (now() - start) / BATCH

        async def ours_case() -> float:
            todo = paths()
            data = {"amount": 1}
            start = now()
            for path in todo:
                await app.trigger_event(path, data=data)
            return (now() - start) / BATCH

        samples: Dict[str, List[float]] = {"bare": [], "tiny_listener": []}
        cases: Dict[str, Callable[[], Any]] = {"bare": bare_case, "tiny_listener": ours_case}
        for case in cases.values():  # warm-up
            await case()
        for _ in range(rounds):
            for name, case in cases.items():
                samples[name].append(await case())
        ratio = median_ratio(samples, "tiny_listener", "bare")
        best = {name: min(values) for name, values in samples.items()}
        report(
            "dispatch" + ("-unique-paths" if unique else ""),
            {
                "bare_us_per_event": best["bare"] * 1e6,
                "tiny_listener_us_per_event": best["tiny_listener"] * 1e6,
                "tiny_listener_events_per_s": 1 / best["tiny_listener"],
                "ratio_vs_bare_create_task": ratio,
                "goal_ratio_at_most": 1.25,  # issue 13
                "contexts_left": len(app.ctxs),
            },
        )

    asyncio.run(run())


if __name__ == "__main__":
    _ = interleaved  # shared helper, used by other benchmarks
    main()
