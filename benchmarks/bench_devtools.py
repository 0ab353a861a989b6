"""Dispatch cost of the developer tools' observers, measured in the same run against no observer.

Each case is its own app with the same handler (two ``Param``, one ``Data``), awaited event
by event as in bench_dispatch.py:

- ``off``: no observer: what ``tiny-listener run`` installs at any level but debug
- ``event_log_idle``: an EventLogObserver added while its logger is below DEBUG (what a user
  who adds one by hand pays when it logs nothing)
- ``event_log_text``: ``--log-level debug``: one formatted text line per event
- ``event_log_json``: ``--log-level debug --log-format json``: one JSON line per event
- ``recorder``: the EventRecorder a TestClient installs

Log lines go to a handler that formats them and discards the text, so the figures are the
cost of building the lines, not of a terminal.

    python benchmarks/bench_devtools.py
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any, Awaitable, Callable, Dict, List

from _harness import median_ratio, now, report, rounds_from_env

from tiny_listener import Data, Listener, Param
from tiny_listener.devtools.logs import EventLogObserver, JsonFormatter
from tiny_listener.testing import EventRecorder

BATCH = 5_000


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:  # pragma: no cover - never run
        pass


class Discard(io.TextIOBase):
    """A stream that counts what is written and keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def make_app() -> App:
    app = App()

    @app.on_event("user:{name}:{order:int}")
    async def handler(name: Param, order: Param, amount: Data) -> Any:
        return amount

    return app


def event_logger(name: str, formatter: logging.Formatter, level: int) -> logging.Logger:
    logger = logging.getLogger(f"bench.{name}")
    logger.propagate = False
    logger.setLevel(level)
    handler = logging.StreamHandler(Discard())
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return logger


def main() -> None:
    rounds = rounds_from_env(20)
    paths = [f"user:u{i % 1000}:{i % 1000}" for i in range(BATCH)]
    data = {"amount": 1}
    text = logging.Formatter("%(levelname)s: %(message)s")

    names = ("off", "event_log_idle", "event_log_text", "event_log_json", "recorder")
    apps: Dict[str, App] = {name: make_app() for name in names}
    apps["event_log_idle"].add_event_observer(EventLogObserver(event_logger("idle", text, logging.INFO)))
    apps["event_log_text"].add_event_observer(EventLogObserver(event_logger("text", text, logging.DEBUG)))
    apps["event_log_json"].add_event_observer(EventLogObserver(event_logger("json", JsonFormatter(), logging.DEBUG)))
    recorder = EventRecorder()
    apps["recorder"].add_event_observer(recorder)

    def case(app: App) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            start = now()
            for path in paths:
                await app.trigger_event(path, data=data)
            elapsed = (now() - start) / BATCH
            recorder.clear()  # the recorder keeps every event: measure a batch at a time
            return elapsed

        return run

    cases = {name: case(app) for name, app in apps.items()}

    async def run() -> Dict[str, List[float]]:
        samples: Dict[str, List[float]] = {name: [] for name in cases}
        for measure in cases.values():  # warm-up
            await measure()
        for _ in range(rounds):
            for name, measure in cases.items():
                samples[name].append(await measure())
        return samples

    samples = asyncio.run(run())
    figures: Dict[str, Any] = {f"{name}_us_per_event": min(samples[name]) * 1e6 for name in cases}
    for name in cases:
        if name != "off":
            figures[f"{name}_ratio_vs_off"] = median_ratio(samples, name, "off")
    report("devtools", figures)


if __name__ == "__main__":
    main()
