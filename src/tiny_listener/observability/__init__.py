"""Observability middlewares, built on :meth:`Listener.add_event_observer`.

- :mod:`.metrics`: per-route counters and latency histograms in memory (standard library only).
- :mod:`.prometheus`: exposes those metrics to Prometheus (extra ``prometheus``).
- :mod:`.otel`: an OpenTelemetry span per event (extra ``otel``).

Nothing here is imported by the core: an app that installs none of them pays nothing, and the
optional client libraries are imported only by the module that needs them.
"""

from __future__ import annotations

from .metrics import LatencyHistogram as LatencyHistogram
from .metrics import RouteMetrics as RouteMetrics
from .metrics import RouteStats as RouteStats
from .metrics import event_outcome as event_outcome

__all__ = ("LatencyHistogram", "RouteMetrics", "RouteStats", "event_outcome")
