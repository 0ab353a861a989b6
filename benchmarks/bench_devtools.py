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
from typing import Dict

from _harness import interleaved_async, report, rounds_from_env
from _observer_cost import App, batch_case, cost_figures, make_app

from tiny_listener.devtools.logs import EventLogObserver, JsonFormatter
from tiny_listener.testing import EventRecorder


class Discard(io.TextIOBase):
    """A stream that counts what is written and keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


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
    text = logging.Formatter("%(levelname)s: %(message)s")

    names = ("off", "event_log_idle", "event_log_text", "event_log_json", "recorder")
    apps: Dict[str, App] = {name: make_app() for name in names}
    apps["event_log_idle"].add_event_observer(EventLogObserver(event_logger("idle", text, logging.INFO)))
    apps["event_log_text"].add_event_observer(EventLogObserver(event_logger("text", text, logging.DEBUG)))
    apps["event_log_json"].add_event_observer(EventLogObserver(event_logger("json", JsonFormatter(), logging.DEBUG)))
    recorder = EventRecorder()
    apps["recorder"].add_event_observer(recorder)

    # The recorder keeps every event: each case clears it after its batch.
    cases = {name: batch_case(app, recorder.clear) for name, app in apps.items()}
    samples = asyncio.run(interleaved_async(cases, rounds))
    report("devtools", cost_figures(samples))


if __name__ == "__main__":
    main()
