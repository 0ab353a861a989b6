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
from typing import Any, Callable, Dict, List


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
