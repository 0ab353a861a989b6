"""Per-route event counters and latency histograms, kept in memory by an event observer.

    metrics = RouteMetrics().install(app)
    ...
    stats = metrics.snapshot()["hello"]     # keyed by handler name, as ``app.routes``
    stats.done, stats.failed, stats.latency.quantile(0.99)

Only the standard library is used. The Prometheus exporter reads these same figures at scrape
time, so exposing them adds no work to dispatch.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

from ..lifecycle import CANCELLED, FAILED

if TYPE_CHECKING:
    from ..event import Event
    from ..listener import Listener

DONE_OUTCOME = "done"
FAILED_OUTCOME = "failed"
CANCELLED_OUTCOME = "cancelled"
OUTCOMES: Tuple[str, ...] = (DONE_OUTCOME, FAILED_OUTCOME, CANCELLED_OUTCOME)

# Seconds; the Prometheus client's defaults extended down to 100 µs, since most handlers are fast.
DEFAULT_BUCKETS: Tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def event_outcome(event: Event[Any]) -> str:
    """Return how an ended event's task ended: ``"done"``, ``"failed"`` or ``"cancelled"``.

    ``"failed"`` covers every handler error, including one an ``on_error`` handler took. An
    event whose handler called ``prevent_auto_done()`` and returned counts as ``"done"``: its
    task is over, even though the event is marked done later.
    """
    state = event.state
    if state is FAILED:
        return FAILED_OUTCOME
    if state is CANCELLED:
        return CANCELLED_OUTCOME
    return DONE_OUTCOME


@dataclasses.dataclass(frozen=True)
class LatencyHistogram:
    """Event durations in seconds: ``counts[i]`` durations were at most ``buckets[i]`` (cumulative),
    ``count`` in all (the implicit ``+Inf`` bucket) summing to ``sum`` seconds."""

    buckets: Tuple[float, ...]
    counts: Tuple[int, ...]
    count: int
    sum: float

    @property
    def mean(self) -> float:
        """Mean duration in seconds; 0.0 when nothing was recorded."""
        return self.sum / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Estimate the ``q`` quantile (0 < q <= 1) in seconds, interpolating inside a bucket
        as Prometheus' ``histogram_quantile`` does.

        Returns 0.0 when nothing was recorded, and the highest bound when the quantile falls
        in the ``+Inf`` bucket. Raises ``ValueError`` for ``q`` outside (0, 1].
        """
        if not 0.0 < q <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {q}")
        if not self.count:
            return 0.0
        rank = q * self.count
        index = bisect.bisect_left(self.counts, rank)
        if index == len(self.buckets):
            return self.buckets[-1]
        lower_bound = self.buckets[index - 1] if index else 0.0
        below = self.counts[index - 1] if index else 0
        inside = self.counts[index] - below
        return lower_bound + (self.buckets[index] - lower_bound) * (rank - below) / inside


@dataclasses.dataclass(frozen=True)
class RouteStats:
    """What one route's events did since the metrics were installed or reset.

    ``started`` counts events whose task started; ``done + failed + cancelled`` those that
    ended; ``in_flight`` those still running. ``latency`` is the task's duration (before-event
    hooks, handler, after-event hooks and error handlers) of ended events.
    """

    handler: str
    path: str
    started: int
    done: int
    failed: int
    cancelled: int
    latency: LatencyHistogram

    @property
    def ended(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def in_flight(self) -> int:
        return self.started - self.ended


class _RouteCounters:
    """Mutable figures of one route; only the event loop's thread writes them."""

    __slots__ = ("bucket_counts", "duration_sum", "ended", "path", "started")

    def __init__(self, path: str, bucket_count: int) -> None:
        self.path = path
        self.started = 0
        self.ended: Dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        # Not cumulative: one slot per bucket plus the +Inf one; snapshot() accumulates.
        self.bucket_counts: List[int] = [0] * (bucket_count + 1)
        self.duration_sum = 0.0


class RouteMetrics:
    """An event observer counting, per route, events started and ended by outcome, and
    histograms of their durations. Read them with :meth:`snapshot`.

    ``buckets`` are the histogram's upper bounds in seconds, increasing.
    Raises ``ValueError`` if they are empty or not increasing.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"histogram buckets must be a non-empty increasing sequence, got {buckets!r}")
        self.buckets = bounds
        self._routes: Dict[str, _RouteCounters] = {}
        self._started_at: Dict[Event[Any], float] = {}

    def install(self, app: Listener[Any]) -> RouteMetrics:
        """Observe every event of ``app`` from now on; return ``self``."""
        app.add_event_observer(self)
        return self

    def uninstall(self, app: Listener[Any]) -> bool:
        """Stop observing ``app``; return False if it was not observed."""
        return app.remove_event_observer(self)

    def event_started(self, event: Event[Any]) -> None:
        route = event.route
        counters = self._routes.get(route.name)
        if counters is None:
            counters = self._routes[route.name] = _RouteCounters(route.path, len(self.buckets))
        counters.started += 1
        self._started_at[event] = time.perf_counter()

    def event_ended(self, event: Event[Any]) -> None:
        started_at = self._started_at.pop(event, None)
        counters = self._routes.get(event.route.name)
        if started_at is None or counters is None:
            return  # started before a reset(): its start was not counted either
        duration = time.perf_counter() - started_at
        counters.ended[event_outcome(event)] += 1
        counters.bucket_counts[bisect.bisect_left(self.buckets, duration)] += 1
        counters.duration_sum += duration

    def reset(self) -> None:
        """Forget every figure; events running now are not counted when they end."""
        self._routes = {}
        self._started_at = {}

    def snapshot(self) -> Dict[str, RouteStats]:
        """Return the figures of every route that saw an event, keyed by handler name.

        Safe to call from another thread (a metrics server's): it copies each figure with
        operations the GIL makes atomic, so a histogram's ``count`` always equals the sum of
        its buckets, though figures of different routes may be a few events apart.
        """
        stats: Dict[str, RouteStats] = {}
        for name, counters in list(self._routes.items()):
            per_bucket = list(counters.bucket_counts)
            cumulative: List[int] = []
            running = 0
            for count in per_bucket:
                running += count
                cumulative.append(running)
            # Ended counts are copied before ``started`` is read, so in_flight is never negative.
            ended = dict(counters.ended)
            stats[name] = RouteStats(
                handler=name,
                path=counters.path,
                started=counters.started,
                done=ended[DONE_OUTCOME],
                failed=ended[FAILED_OUTCOME],
                cancelled=ended[CANCELLED_OUTCOME],
                latency=LatencyHistogram(
                    buckets=self.buckets,
                    counts=tuple(cumulative[:-1]),
                    count=cumulative[-1],
                    sum=counters.duration_sum,
                ),
            )
        return stats
