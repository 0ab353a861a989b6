"""Prometheus exposition of :class:`~tiny_listener.observability.metrics.RouteMetrics`
(``pip install 'tiny-listener[prometheus]'``).

    metrics = RouteMetrics().install(app)
    exporter = PrometheusExporter(metrics)
    exporter.serve(app, port=9100)          # /metrics served while the app runs
    # or: exporter.generate_latest() -> bytes, to answer a scrape from your own server

The figures are read from ``RouteMetrics`` when Prometheus scrapes, so exposing them adds no
work to event dispatch. Metrics (labels ``handler`` and ``route``, the route's path):

- ``tiny_listener_events_started_total``
- ``tiny_listener_events_ended_total`` (label ``outcome``: done, failed, cancelled)
- ``tiny_listener_events_in_flight``
- ``tiny_listener_event_duration_seconds`` (histogram)
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, List, Tuple
from wsgiref.simple_server import WSGIServer

from ..optional import require

# Importing this module without the extra raises MissingExtraError naming it.
require("prometheus_client", extra="prometheus")

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server  # noqa: E402
from prometheus_client.core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..listener import Listener  # noqa: E402
from .metrics import OUTCOMES, RouteMetrics  # noqa: E402

LABELS = ("handler", "route")


class RouteMetricsCollector:
    """A Prometheus collector that turns a :class:`RouteMetrics` snapshot into metric families."""

    def __init__(self, metrics: RouteMetrics, namespace: str = "tiny_listener") -> None:
        self.metrics = metrics
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        prefix = self.namespace
        started = CounterMetricFamily(f"{prefix}_events_started", "Events whose task started.", labels=LABELS)
        ended = CounterMetricFamily(
            f"{prefix}_events_ended", "Events whose task ended, by outcome.", labels=(*LABELS, "outcome")
        )
        in_flight = GaugeMetricFamily(f"{prefix}_events_in_flight", "Events running now.", labels=LABELS)
        duration = HistogramMetricFamily(
            f"{prefix}_event_duration_seconds", "Duration of ended events' tasks, in seconds.", labels=LABELS
        )
        for stats in self.metrics.snapshot().values():
            labels = [stats.handler, stats.path]
            started.add_metric(labels, stats.started)
            for outcome, count in zip(OUTCOMES, (stats.done, stats.failed, stats.cancelled)):
                ended.add_metric([*labels, outcome], count)
            in_flight.add_metric(labels, stats.in_flight)
            latency = stats.latency
            buckets: List[Tuple[str, float]] = [
                (_bound_text(bound), count) for bound, count in zip(latency.buckets, latency.counts)
            ]
            buckets.append(("+Inf", latency.count))
            duration.add_metric(labels, buckets, latency.sum)
        yield from (started, ended, in_flight, duration)

    def describe(self) -> Iterator[Metric]:
        # The registry learns the metric names from here to refuse duplicates: families
        # without samples are enough, and cost no snapshot.
        return RouteMetricsCollector(RouteMetrics(), self.namespace).collect()


def _bound_text(bound: float) -> str:
    # Prometheus writes bucket bounds as floats ("0.5", "1.0").
    return repr(float(bound))


class MetricsServer:
    """A ``/metrics`` HTTP server running in a daemon thread; ``port`` is the bound port."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host: str = str(httpd.server_address[0])
        self.port: int = int(httpd.server_address[1])

    def close(self) -> None:
        """Stop serving and wait for the thread to end (up to half a second: its poll interval)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class PrometheusExporter:
    """Exposes ``metrics`` in the Prometheus text format through ``registry``.

    Without ``registry`` the exporter makes its own; pass ``prometheus_client.REGISTRY`` to
    expose these metrics with the process's other ones. Raises ``ValueError`` (from
    prometheus-client) if the registry already has metrics of these names.
    """

    content_type: str = CONTENT_TYPE_LATEST

    def __init__(
        self, metrics: RouteMetrics, registry: CollectorRegistry | None = None, namespace: str = "tiny_listener"
    ) -> None:
        self.metrics = metrics
        self.registry = registry if registry is not None else CollectorRegistry()
        self.collector = RouteMetricsCollector(metrics, namespace)
        self.registry.register(self.collector)
        # The server started by serve(), while the app runs.
        self.server: MetricsServer | None = None

    def generate_latest(self) -> bytes:
        """Return the registry's metrics in the Prometheus text format (``content_type``)."""
        return generate_latest(self.registry)

    def start_http_server(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve the registry on ``http://addr:port/`` (any path) in a daemon thread and return
        the server; ``port=0`` picks a free port (read it from ``server.port``).

        Raises ``OSError`` if the address cannot be bound.
        """
        httpd, thread = start_http_server(port, addr=addr, registry=self.registry)
        return MetricsServer(httpd, thread)

    def serve(self, app: Listener[Any], port: int, addr: str = "127.0.0.1") -> None:
        """Serve the metrics while ``app`` runs: a startup hook starts the server (then in
        ``self.server``; ``port=0`` picks a free port) and a shutdown hook closes it. A port
        that cannot be bound makes the app's startup fail."""

        async def start_metrics_server() -> None:
            self.server = self.start_http_server(port, addr)

        async def stop_metrics_server() -> None:
            server, self.server = self.server, None
            if server is not None:
                # close() blocks up to the server's poll interval: keep the loop free meanwhile.
                await asyncio.get_running_loop().run_in_executor(None, server.close)

        app.add_startup_callback(start_metrics_server)
        app.add_shutdown_callback(stop_metrics_server)
