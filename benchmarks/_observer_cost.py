"""The parts the observer-cost benchmarks (bench_devtools, bench_observability) share: one app
per case, each dispatching the same batch of events, and the figures against the case
``off`` (no observer)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List

from _harness import median_ratio, now

from tiny_listener import Data, Listener, Param

BATCH = 5_000
PATHS = [f"user:u{i % 1000}:{i % 1000}" for i in range(BATCH)]
DATA = {"amount": 1}


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:  # pragma: no cover - never run
        pass


def make_app() -> App:
    """An app with one route taking two ``Param`` and one ``Data``, as bench_dispatch's."""
    app = App()

    @app.on_event("user:{name}:{order:int}")
    async def handler(name: Param, order: Param, amount: Data) -> Any:
        return amount

    return app


def batch_case(app: App, after: Callable[[], None] | None = None) -> Callable[[], Awaitable[float]]:
    """A case for ``interleaved_async``: trigger and await the batch of events on ``app``, one
    after the other, then call ``after`` (not timed); returns seconds per event."""

    async def run() -> float:
        start = now()
        for path in PATHS:
            await app.trigger_event(path, data=DATA)
        elapsed = (now() - start) / BATCH
        if after is not None:
            after()
        return elapsed

    return run


def cost_figures(samples: Dict[str, List[float]]) -> Dict[str, Any]:
    """``<case>_us_per_event`` (the best round) for every case, then ``<case>_ratio_vs_off``
    (median of the per-round ratios) for every case but ``off``."""
    figures: Dict[str, Any] = {f"{name}_us_per_event": min(values) * 1e6 for name, values in samples.items()}
    for name in samples:
        if name != "off":
            figures[f"{name}_ratio_vs_off"] = median_ratio(samples, name, "off")
    return figures
