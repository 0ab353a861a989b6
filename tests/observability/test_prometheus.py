"""PrometheusExporter: RouteMetrics in the Prometheus text format, over HTTP too."""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
import threading
import urllib.request
from typing import Dict, Tuple

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tiny_listener import Listener, Param
from tiny_listener.observability import RouteMetrics
from tiny_listener.observability.prometheus import PrometheusExporter
from tiny_listener.optional import MissingExtraError

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


class App(Listener):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.listening = asyncio.Event()

    async def listen(self) -> None:
        self.listening.set()
        await self.wait_for_shutdown()


def make_app() -> App:
    app = App()

    @app.on_event("user:{name}")
    async def hello(name: Param) -> str:
        return f"hello {name}"

    @app.on_event("boom")
    async def boom() -> None:
        raise ValueError("boom")

    return app


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def run_events(app: App) -> None:
    for name in ("a", "b"):
        await app.trigger_event(f"user:{name}")
    with pytest.raises(ValueError, match="boom"):
        await app.trigger_event("boom")


HELLO = (("handler", "hello"), ("route", "user:{name}"))
BOOM = (("handler", "boom"), ("route", "boom"))


def check_figures(samples: Samples) -> None:
    assert samples[("tiny_listener_events_started_total", HELLO)] == 2
    assert samples[("tiny_listener_events_ended_total", (*HELLO[:1], ("outcome", "done"), *HELLO[1:]))] == 2
    assert samples[("tiny_listener_events_ended_total", (*HELLO[:1], ("outcome", "failed"), *HELLO[1:]))] == 0
    assert samples[("tiny_listener_events_ended_total", (*BOOM[:1], ("outcome", "failed"), *BOOM[1:]))] == 1
    assert samples[("tiny_listener_events_in_flight", HELLO)] == 0
    assert samples[("tiny_listener_event_duration_seconds_count", HELLO)] == 2
    assert samples[("tiny_listener_event_duration_seconds_bucket", (*HELLO[:1], ("le", "+Inf"), *HELLO[1:]))] == 2
    assert samples[("tiny_listener_event_duration_seconds_sum", HELLO)] > 0


async def test_generate_latest_exposes_every_route() -> None:
    app = make_app()
    exporter = PrometheusExporter(RouteMetrics().install(app))
    await run_events(app)
    check_figures(parse(exporter.generate_latest().decode()))
    assert exporter.content_type.startswith("text/plain")


async def test_histogram_buckets_are_the_metrics_buckets() -> None:
    app = make_app()
    exporter = PrometheusExporter(RouteMetrics(buckets=(0.5, 3600.0)).install(app))
    await app.trigger_event("user:a")
    samples = parse(exporter.generate_latest().decode())
    bounds = sorted(labels[1][1] for name, labels in samples if name == "tiny_listener_event_duration_seconds_bucket")
    assert bounds == ["+Inf", "0.5", "3600.0"]
    assert samples[("tiny_listener_event_duration_seconds_bucket", (*HELLO[:1], ("le", "3600.0"), *HELLO[1:]))] == 1


async def test_start_http_server_serves_the_registry() -> None:
    app = make_app()
    exporter = PrometheusExporter(RouteMetrics().install(app))
    await run_events(app)
    server = exporter.start_http_server(0)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        check_figures(parse(await asyncio.to_thread(fetch, f"http://127.0.0.1:{server.port}/metrics")))
    finally:
        await asyncio.to_thread(server.close)


async def test_serve_runs_the_server_while_the_app_runs() -> None:
    app = make_app()
    exporter = PrometheusExporter(RouteMetrics().install(app))
    exporter.serve(app, port=0)
    assert exporter.server is None
    main = asyncio.create_task(app.main())
    try:
        await app.listening.wait()
        assert exporter.server is not None
        port = exporter.server.port
        await run_events(app)
        check_figures(parse(await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/metrics")))
    finally:
        await app.graceful_shutdown()
        await main
    assert exporter.server is None
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


async def test_serve_on_a_taken_port_fails_the_startup() -> None:
    app = make_app()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        PrometheusExporter(RouteMetrics().install(app)).serve(app, port=taken.getsockname()[1])
        with pytest.raises(OSError):
            await app.main()
    assert not app.listening.is_set()


async def test_scrapes_from_another_thread_while_events_run() -> None:
    # The server's thread reads the figures while the loop's thread updates them.
    app = make_app()
    exporter = PrometheusExporter(RouteMetrics().install(app))
    server = exporter.start_http_server(0)
    url = f"http://127.0.0.1:{server.port}/metrics"
    stop = threading.Event()
    scrapes: list[Samples] = []

    def scrape_until_stopped() -> None:
        while not stop.is_set() or not scrapes:
            scrapes.append(parse(fetch(url)))

    scraper = asyncio.ensure_future(asyncio.to_thread(scrape_until_stopped))
    try:
        for batch in range(20):
            await asyncio.gather(*(app.trigger_event(f"user:{batch}-{i}") for i in range(200)))
    finally:
        stop.set()
        await scraper
        await asyncio.to_thread(server.close)
    started = [scrape.get(("tiny_listener_events_started_total", HELLO), 0.0) for scrape in scrapes]
    assert started == sorted(started)
    for scrape in scrapes:
        if ("tiny_listener_event_duration_seconds_count", HELLO) in scrape:
            inf_bucket = ("tiny_listener_event_duration_seconds_bucket", (*HELLO[:1], ("le", "+Inf"), *HELLO[1:]))
            assert scrape[inf_bucket] == scrape[("tiny_listener_event_duration_seconds_count", HELLO)]
            assert scrape[("tiny_listener_events_in_flight", HELLO)] >= 0
    final = parse(exporter.generate_latest().decode())
    assert final[("tiny_listener_events_started_total", HELLO)] == 4000


def test_a_registry_refuses_the_same_metrics_twice() -> None:
    registry = CollectorRegistry()
    PrometheusExporter(RouteMetrics(), registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusExporter(RouteMetrics(), registry=registry)
    PrometheusExporter(RouteMetrics(), registry=registry, namespace="other_app")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "tiny_listener.observability.prometheus")
    with pytest.raises(MissingExtraError, match=r"tiny-listener\[prometheus\]"):
        importlib.import_module("tiny_listener.observability.prometheus")
