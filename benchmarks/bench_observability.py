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
from typing import Any, Awaitable, Callable, Dict, List, Sequence

from _harness import median_ratio, now, report, rounds_from_env
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tiny_listener import Data, Listener, Param
from tiny_listener.observability import RouteMetrics
from tiny_listener.observability.otel import EventTracer
from tiny_listener.observability.prometheus import PrometheusExporter

BATCH = 5_000


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:  # pragma: no cover - never run
        pass


class DropSpans(SpanExporter):
    """Receives every ended span (so the SDK does all its work) and keeps none."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def make_app() -> App:
    app = App()

    @app.on_event("user:{name}:{order:int}")
    async def handler(name: Param, order: Param, amount: Data) -> Any:
        return amount

    return app


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
    paths = [f"user:u{i % 1000}:{i % 1000}" for i in range(BATCH)]
    data = {"amount": 1}

    names = ("off", "metrics", "prometheus", "otel_noop", "otel_sdk", "all")
    apps: Dict[str, App] = {name: make_app() for name in names}
    RouteMetrics().install(apps["metrics"])
    exporter = PrometheusExporter(RouteMetrics().install(apps["prometheus"]))
    EventTracer().install(apps["otel_noop"])  # no global SDK configured: the API's no-op tracer
    EventTracer(sdk_provider()).install(apps["otel_sdk"])
    all_exporter = PrometheusExporter(RouteMetrics().install(apps["all"]))
    EventTracer(sdk_provider()).install(apps["all"])
    scrapes: List[int] = []

    def case(app: App, after: Callable[[], None] | None = None) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            start = now()
            for path in paths:
                await app.trigger_event(path, data=data)
            elapsed = (now() - start) / BATCH
            if after is not None:
                after()
            return elapsed

        return run

    cases = {
        "off": case(apps["off"]),
        "metrics": case(apps["metrics"]),
        "prometheus": case(apps["prometheus"], lambda: scrapes.append(len(exporter.generate_latest()))),
        "otel_noop": case(apps["otel_noop"]),
        "otel_sdk": case(apps["otel_sdk"]),
        "all": case(apps["all"], lambda: scrapes.append(len(all_exporter.generate_latest()))),
    }

    async def run() -> Dict[str, List[float]]:
        samples: Dict[str, List[float]] = {name: [] for name in cases}
        for measure in cases.values():  # warm-up
            await measure()
        for _ in range(rounds):
            for name, measure in cases.items():
                samples[name].append(await measure())
        return samples

    samples = asyncio.run(run())
    best = {name: min(values) for name, values in samples.items()}
    figures: Dict[str, Any] = {f"{name}_us_per_event": best[name] * 1e6 for name in cases}
    for name in cases:
        if name != "off":
            figures[f"{name}_ratio_vs_off"] = median_ratio(samples, name, "off")
    figures["scrape_bytes"] = max(scrapes)
    figures["sdk_span_alone_us"] = sdk_span_cost() * 1e6
    otel_sdk_added_us = (best["otel_sdk"] - best["off"]) * 1e6
    figures["otel_sdk_added_beyond_sdk_span_us"] = otel_sdk_added_us - figures["sdk_span_alone_us"]
    figures["events_counted_by_prometheus_case"] = sum(stats.started for stats in exporter.metrics.snapshot().values())
    report("observability", figures)


if __name__ == "__main__":
    main()
