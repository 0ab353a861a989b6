"""RouteMetrics: per-route counters and latency histograms from event observers."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tiny_listener import Event, Listener, Param
from tiny_listener.observability import LatencyHistogram, RouteMetrics, event_outcome


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        await self.wait_for_shutdown()


class Gate:
    """Lets a test wait until ``slow`` handlers are running, then let them return."""

    def __init__(self) -> None:
        self.entered: asyncio.Queue[None] = asyncio.Queue()
        self.release = asyncio.Event()

    def set(self) -> None:
        self.release.set()

    async def running(self, count: int) -> None:
        for _ in range(count):
            await self.entered.get()


def make_app() -> tuple[App, Gate]:
    """An app with a handler per outcome; ``slow`` runs until its gate is set."""
    app = App()
    release = Gate()

    @app.on_event("user:{name}")
    async def hello(name: Param) -> str:
        return f"hello {name}"

    @app.on_event("boom")
    async def boom() -> None:
        raise ValueError("boom")

    @app.on_event("slow")
    async def slow() -> str:
        release.entered.put_nowait(None)
        await release.release.wait()
        return "slow"

    return app, release


async def test_counts_each_outcome_per_route() -> None:
    app, release = make_app()
    metrics = RouteMetrics().install(app)

    assert [await app.trigger_event(f"user:u{i}") for i in range(3)] == ["hello u0", "hello u1", "hello u2"]
    with pytest.raises(ValueError, match="boom"):
        await app.trigger_event("boom")
    held = app.trigger_event("slow")
    cancelled = app.trigger_event("slow")
    await release.running(2)
    in_flight = metrics.snapshot()["slow"]
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()
    assert await held == "slow"

    stats = metrics.snapshot()
    assert set(stats) == {"hello", "boom", "slow"}
    hello = stats["hello"]
    assert (hello.handler, hello.path) == ("hello", "user:{name}")
    assert (hello.started, hello.done, hello.failed, hello.cancelled, hello.in_flight) == (3, 3, 0, 0, 0)
    assert (stats["boom"].started, stats["boom"].failed, stats["boom"].done) == (1, 1, 0)
    assert (in_flight.started, in_flight.in_flight, in_flight.ended) == (2, 2, 0)
    slow = stats["slow"]
    assert (slow.started, slow.done, slow.cancelled, slow.in_flight) == (2, 1, 1, 0)
    assert slow.latency.count == 2 and slow.latency.sum > 0


async def test_latency_histogram_is_cumulative_and_counts_every_ended_event() -> None:
    app, _ = make_app()
    # One bound far above any duration: every event falls in it, whatever the machine's speed.
    metrics = RouteMetrics(buckets=(3600.0,)).install(app)
    for i in range(5):
        await app.trigger_event(f"user:{i}")
    latency = metrics.snapshot()["hello"].latency
    assert latency.buckets == (3600.0,)
    assert latency.counts == (5,) and latency.count == 5
    assert 0 < latency.mean < 3600


async def test_error_taken_by_on_error_counts_as_failed() -> None:
    app, _ = make_app()
    metrics = RouteMetrics().install(app)

    @app.on_error(ValueError)
    async def ignore_value_errors(event: Event) -> None:
        pass

    assert await app.trigger_event("boom") is None
    assert metrics.snapshot()["boom"].failed == 1


async def test_prevent_auto_done_counts_as_done_when_the_task_returns() -> None:
    app = App()
    metrics = RouteMetrics().install(app)
    outcomes: list[str] = []

    @app.on_event("later")
    async def later(event: Event) -> None:
        event.prevent_auto_done()

    class OutcomeRecorder:
        def event_started(self, event: Event) -> None:
            pass

        def event_ended(self, event: Event) -> None:
            outcomes.append(event_outcome(event))

    app.add_event_observer(OutcomeRecorder())
    await app.trigger_event("later")
    assert outcomes == ["done"]
    assert metrics.snapshot()["later"].done == 1


async def test_event_cancelled_before_it_started_is_not_counted() -> None:
    # Observers see events whose task started; this one never ran a line.
    app, _ = make_app()
    metrics = RouteMetrics().install(app)
    task = app.trigger_event("user:bob")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert metrics.snapshot() == {}


async def test_reset_forgets_figures_and_ignores_events_started_before() -> None:
    app, release = make_app()
    metrics = RouteMetrics().install(app)
    await app.trigger_event("user:a")
    running = app.trigger_event("slow")
    await release.running(1)
    metrics.reset()
    release.set()
    await running
    assert metrics.snapshot() == {}
    await app.trigger_event("user:b")
    assert metrics.snapshot()["hello"].done == 1


async def test_uninstall_stops_counting() -> None:
    app, _ = make_app()
    metrics = RouteMetrics().install(app)
    await app.trigger_event("user:a")
    assert metrics.uninstall(app) is True
    assert metrics.uninstall(app) is False
    await app.trigger_event("user:b")
    assert metrics.snapshot()["hello"].started == 1


@pytest.mark.parametrize("buckets", [(), (1.0, 0.5), (0.1, 0.1)])
def test_buckets_must_increase(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        RouteMetrics(buckets=buckets)


def test_quantile_interpolates_inside_a_bucket() -> None:
    # 10 events <= 0.1 s, 10 more <= 0.2 s, none above.
    histogram = LatencyHistogram(buckets=(0.1, 0.2, 0.4), counts=(10, 20, 20), count=20, sum=3.0)
    assert histogram.quantile(0.25) == pytest.approx(0.05)
    assert histogram.quantile(0.5) == pytest.approx(0.1)
    assert histogram.quantile(0.75) == pytest.approx(0.15)
    assert histogram.quantile(1.0) == pytest.approx(0.2)
    assert histogram.mean == pytest.approx(0.15)


def test_quantile_in_the_inf_bucket_is_the_highest_bound() -> None:
    histogram = LatencyHistogram(buckets=(0.1,), counts=(1,), count=4, sum=9.0)
    assert histogram.quantile(0.9) == 0.1


def test_quantile_of_an_empty_histogram_and_bad_q() -> None:
    empty = LatencyHistogram(buckets=(0.1,), counts=(0,), count=0, sum=0.0)
    assert empty.quantile(0.5) == 0.0 and empty.mean == 0.0
    with pytest.raises(ValueError, match="quantile"):
        empty.quantile(0.0)


def test_importing_observability_imports_no_optional_client() -> None:
    code = (
        "import sys, tiny_listener, tiny_listener.observability\n"
        "loaded = [m for m in ('prometheus_client', 'opentelemetry') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
