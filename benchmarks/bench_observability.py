"""Dispatch cost with observability on vs off, measured in the same run.

Each case is its own app with the same handler (two ``Param``, one ``Data``), awaited event
by event as in bench_dispatch.py:

- ``off``: no observer (what an app that installs nothing pays)
- ``metrics``: RouteMetrics
- ``prometheus``: RouteMetrics + PrometheusExporter (read at scrape time; one scrape per round)
- ``otel_noop``: EventTracer with opentelemetry-api alone (no SDK: non-recording spans)
- ``otel_sdk``: EventTracer with an SDK TracerProvider whose spans are recorded and dropped
- ``all``: RouteMetrics + PrometheusExporter + EventTracer (SDK)

    python benchmarks/bench_observability.py
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Sequence

from _harness import interleaved_async, now, report, rounds_from_env
from _observer_cost import BATCH, App, batch_case, cost_figures, make_app
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tiny_listener.observability import RouteMetrics
from tiny_listener.observability.otel import EventTracer
from tiny_listener.observability.prometheus import PrometheusExporter


class DropSpans(SpanExporter):
    """Receives every ended span (so the SDK does all its work) and keeps none."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sdk_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropSpans()))
    return provider


def sdk_span_cost() -> float:
    """Seconds per span for the SDK alone: start, attach, attributes, end, detach (best of 5)."""
    from opentelemetry import context, trace

    tracer = sdk_provider().get_tracer("bench")
    attributes = {"path": "user:u1:1", "route": "user:{name}:{order:int}", "handler": "handler", "cid": "x"}
    best = float("inf")
    for _ in range(5):
        start = now()
        for _ in range(BATCH):
            span = tracer.start_span("user:{name}:{order:int}", attributes=attributes)
            token = context.attach(trace.set_span_in_context(span))
            span.set_attribute("outcome", "done")
            span.end()
            context.detach(token)
        best = min(best, (now() - start) / BATCH)
    return best


def main() -> None:
    rounds = rounds_from_env(20)

    names = ("off", "metrics", "prometheus", "otel_noop", "otel_sdk", "all")
    apps: Dict[str, App] = {name: make_app() for name in names}
    RouteMetrics().install(apps["metrics"])
    exporter = PrometheusExporter(RouteMetrics().install(apps["prometheus"]))
    EventTracer().install(apps["otel_noop"])  # no global SDK configured: the API's no-op tracer
    EventTracer(sdk_provider()).install(apps["otel_sdk"])
    all_exporter = PrometheusExporter(RouteMetrics().install(apps["all"]))
    EventTracer(sdk_provider()).install(apps["all"])
    scrapes: List[int] = []

    cases = {
        "off": batch_case(apps["off"]),
        "metrics": batch_case(apps["metrics"]),
        "prometheus": batch_case(apps["prometheus"], lambda: scrapes.append(len(exporter.generate_latest()))),
        "otel_noop": batch_case(apps["otel_noop"]),
        "otel_sdk": batch_case(apps["otel_sdk"]),
        "all": batch_case(apps["all"], lambda: scrapes.append(len(all_exporter.generate_latest()))),
    }
    samples = asyncio.run(interleaved_async(cases, rounds))
    figures = cost_figures(samples)
    figures["scrape_bytes"] = max(scrapes)
    figures["sdk_span_alone_us"] = sdk_span_cost() * 1e6
    otel_sdk_added_us = figures["otel_sdk_us_per_event"] - figures["off_us_per_event"]
    figures["otel_sdk_added_beyond_sdk_span_us"] = otel_sdk_added_us - figures["sdk_span_alone_us"]
    figures["events_counted_by_prometheus_case"] = sum(stats.started for stats in exporter.metrics.snapshot().values())
    report("observability", figures)


if __name__ == "__main__":
    main()
