"""Shared measurement helpers: interleaved rounds, medians, one JSON line of figures.

Every benchmark compares figures measured in the same run, round by round, so that a noisy
shared machine moves both sides of a ratio together. Works with any tiny-listener version.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Sequence


def tiny_listener_version() -> str:
    import tiny_listener

    return str(tiny_listener.__version__)


def interleaved(cases: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, List[float]]:
    """Run every case once per round, in turn; each case returns seconds per operation."""
    samples: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            samples[name].append(case())
    return samples


async def interleaved_async(
    cases: Dict[str, Callable[[], Awaitable[float]]],
    rounds: int,
    warm_up: Sequence[str] | None = None,
    round_format: str | None = None,
) -> Dict[str, List[float]]:
    """Await every case once per round, in turn, and return each case's figures, one per round.

    First each case named in ``warm_up`` (every case if None) is awaited once, its figure
    dropped. With ``round_format`` (like ``"{:.0f}/s"``), each round's figures are printed to
    stderr as they come.
    """
    for name in cases if warm_up is None else warm_up:
        await cases[name]()
    samples: Dict[str, List[float]] = {name: [] for name in cases}
    for round_number in range(rounds):
        for name, case in cases.items():
            samples[name].append(await case())
        if round_format is not None:
            figures = ", ".join(f"{name}={round_format.format(values[-1])}" for name, values in samples.items())
            eprint(f"round {round_number + 1}: {figures}")
    return samples


def throughput_figures(samples: Dict[str, List[float]], bare_label: str) -> Dict[str, float]:
    """The figures of a throughput benchmark whose cases ``tiny_listener`` and ``bare`` give
    events/s: the median rate of each (the bare one named ``bare_<bare_label>_events_per_s``),
    the median per-round ratio, and the microseconds per event of each median rate."""
    rate = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "tiny_listener_events_per_s": rate["tiny_listener"],
        f"bare_{bare_label}_events_per_s": rate["bare"],
        "throughput_ratio_vs_bare": median_ratio(samples, "tiny_listener", "bare"),
        "tiny_listener_us_per_event": 1e6 / rate["tiny_listener"],
        "bare_us_per_event": 1e6 / rate["bare"],
    }


def median_ratio(samples: Dict[str, List[float]], ours: str, baseline: str) -> float:
    """Median over rounds of ours/baseline, each ratio taken within one round."""
    return statistics.median(a / b for a, b in zip(samples[ours], samples[baseline]))


def report(name: str, figures: Dict[str, Any]) -> None:
    """Print the figures readably, then as one JSON line (``run_all.py`` collects those)."""
    figures = {
        "benchmark": name,
        "tiny_listener": tiny_listener_version(),
        "python": platform.python_version(),
        **figures,
    }
    for key, value in figures.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:<42} {text}")
    print("JSON " + json.dumps(figures), flush=True)


def rounds_from_env(default: int) -> int:
    return int(os.environ.get("BENCH_ROUNDS", default))


def now() -> float:
    return time.perf_counter()


def is_legacy() -> bool:
    """True when running against tiny-listener 1.2 (the baseline install)."""
    return tiny_listener_version().startswith("1.2")


def eprint(*args: Any) -> None:
    print(*args, file=sys.stderr)
