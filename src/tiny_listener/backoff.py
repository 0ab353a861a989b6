"""Exponential backoff with jitter, for reconnect loops and retries."""

from __future__ import annotations

import random
from typing import Iterator


def backoff_delays(initial: float = 0.1, maximum: float = 10.0, factor: float = 2.0) -> Iterator[float]:
    """Yield delays growing from ``initial`` by ``factor`` up to ``maximum``, each with up to
    10% random jitter so that many workers reconnecting at once do not stampede."""
    delay = initial
    while True:
        yield delay * (1 + random.random() / 10)  # noqa: S311 - jitter, not cryptography
        delay = min(delay * factor, maximum)


def retry_delay(attempt: int, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> float:
    """Delay before retry number ``attempt`` (1 for the first retry), without jitter."""
    return min(initial * factor ** max(attempt - 1, 0), maximum)
