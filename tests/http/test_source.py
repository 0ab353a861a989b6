"""HTTPSource hosted beside other sources: health, readiness and metrics from one listener."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tiny_listener import Listener, Param
from tiny_listener.http import HTTPListener, HTTPSource
from tiny_listener.observability import RouteMetrics
from tiny_listener.observability.prometheus import PrometheusExporter
from tiny_listener.sources import Source, SourceState
from tiny_listener.testing import HTTPTestClient


class Feed(Source):
    """A source whose readiness the test sets; it triggers ``job:<n>`` events on request."""

    kind = "feed"

    def __init__(self) -> None:
        super().__init__(name="feed")
        self.jobs: asyncio.Queue[int] = asyncio.Queue()

    async def serve(self) -> None:
        self.set_state(SourceState.READY)
        while True:
            self.listener.trigger_event(f"job:{await self.jobs.get()}")


def make_app() -> Listener[Any]:
    app: Listener[Any] = Listener()

    @app.on_event("job:{n}")
    async def job(n: Param) -> str:
        return n

    @app.on_event("GET:/hello/{name}")
    async def hello(name: Param) -> str:
        return f"Hello, {name}!"

    return app


async def test_health_and_readiness_follow_every_source() -> None:
    app = make_app()
    feed = app.add_source(Feed())
    app.add_source(HTTPSource(health=True))
    async with HTTPTestClient(app) as http:
        await feed.wait_ready()
        live = await http.get("/healthz")
        ready = await http.get("/readyz")
        assert live.status_code == 200 and ready.status_code == 200
        assert ready.header("content-type") == "application/json"
        report = ready.json()
        assert report["status"] == "ready"
        assert report["sources"]["feed"] == {"kind": "feed", "state": "ready"}
        assert report["sources"]["http"]["state"] == "ready"

        feed.set_state(SourceState.RECONNECTING)
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["sources"]["feed"]["state"] == "reconnecting"
        assert (await http.get("/healthz")).status_code == 200  # alive, just not ready

        feed.set_state(SourceState.READY)
        assert (await http.get("/readyz")).status_code == 200
        # The app's own routes are served by the same source.
        assert (await http.get("/hello/bob")).text == "Hello, bob!"


async def test_builtin_endpoints_answer_get_and_head_only_and_only_when_asked_for() -> None:
    app = make_app()
    app.add_source(HTTPSource())  # health not asked for: the paths are the app's to route

    @app.on_event("GET:/healthz")
    async def own_health() -> str:
        return "mine"

    async with HTTPTestClient(app) as http:
        assert (await http.get("/healthz")).text == "mine"
        assert (await http.get("/readyz")).status_code == 404

    app = make_app()
    app.add_source(HTTPSource(health=True))
    async with HTTPTestClient(app) as http:
        assert (await http.request("HEAD", "/readyz")).status_code == 200
        assert (await http.request("POST", "/readyz")).status_code == 404


async def test_metrics_are_served_by_the_app_http_source() -> None:
    app = make_app()
    feed = app.add_source(Feed())
    exporter = PrometheusExporter(RouteMetrics().install(app))
    app.add_source(HTTPSource(metrics=exporter))
    async with HTTPTestClient(app) as http:
        await feed.wait_ready()
        for n in range(3):
            feed.jobs.put_nowait(n)
        await http.client.wait_idle()
        await http.get("/hello/ann")
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.header("content-type", "").startswith("text/plain")
        started = {
            sample.labels["handler"]: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == "tiny_listener_events_started_total"
        }
        assert started == {"job": 3, "hello": 1}


async def test_http_listener_takes_the_endpoints_too() -> None:
    app = HTTPListener(health=True)
    async with HTTPTestClient(app) as http:
        response = await http.get("/readyz")
        assert response.status_code == 200
        assert list(response.json()["sources"]) == ["http"]
    assert app.sources == (app.source,)
