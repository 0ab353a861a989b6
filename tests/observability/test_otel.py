"""EventTracer: one OpenTelemetry span per event, current while the handler runs."""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tiny_listener import Event, Listener, Param
from tiny_listener.observability.otel import EventTracer
from tiny_listener.optional import MissingExtraError


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        await self.wait_for_shutdown()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def only_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(spans) == 1, exporter.get_finished_spans()
    return spans[0]


async def test_span_per_event_with_its_attributes(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = App()
    EventTracer(provider).install(app)
    seen: dict[str, Any] = {}

    @app.on_event("user:{name}")
    async def hello(event: Event, name: Param) -> str:
        seen["span"] = trace.get_current_span().get_span_context()
        seen["cid"] = event.ctx.cid
        return name

    assert await app.trigger_event("user:bob", cid="session-1") == "bob"
    span = only_span(exporter, "user:{name}")
    assert span.kind is SpanKind.INTERNAL
    assert dict(span.attributes or {}) == {
        "tiny_listener.event.path": "user:bob",
        "tiny_listener.route": "user:{name}",
        "tiny_listener.handler": "hello",
        "tiny_listener.cid": "session-1",
        "tiny_listener.outcome": "done",
    }
    assert span.status.status_code is StatusCode.UNSET
    # The handler ran with the event's span current.
    assert seen["span"] == span.get_span_context()


async def test_anonymous_context_id_is_recorded(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = App()
    EventTracer(provider).install(app)
    cids: list[str] = []

    @app.on_event()
    async def anything(event: Event) -> None:
        cids.append(event.ctx.cid)

    await app.trigger_event("x")
    assert only_span(exporter, "{_:path}").attributes["tiny_listener.cid"] == cids[0]  # type: ignore[index]


async def test_failed_event_records_its_error(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = App()
    EventTracer(provider).install(app)

    @app.on_event("boom")
    async def boom() -> None:
        raise ValueError("kaput")

    with pytest.raises(ValueError, match="kaput"):
        await app.trigger_event("boom")
    span = only_span(exporter, "boom")
    assert span.attributes["tiny_listener.outcome"] == "failed"  # type: ignore[index]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: kaput"
    [exception] = [event for event in span.events if event.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"  # type: ignore[index]


async def test_cancelled_event_ends_its_span(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = App()
    EventTracer(provider).install(app)
    entered = asyncio.Event()

    @app.on_event("wait")
    async def wait() -> None:
        entered.set()
        await asyncio.Event().wait()

    task = app.trigger_event("wait")
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = only_span(exporter, "wait")
    assert span.attributes["tiny_listener.outcome"] == "cancelled"  # type: ignore[index]
    assert span.status.status_code is StatusCode.UNSET


async def test_spans_nest_in_both_directions(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = App()
    EventTracer(provider).install(app)
    tracer = provider.get_tracer("test")

    @app.on_event("outer")
    async def outer() -> None:
        with tracer.start_as_current_span("query"):
            await app.trigger_event("inner")

    @app.on_event("inner")
    async def inner() -> None:
        pass

    with tracer.start_as_current_span("request"):
        await app.trigger_event("outer")
    request, outer_span, query, inner_span = (
        only_span(exporter, name) for name in ("request", "outer", "query", "inner")
    )
    # An event's span is a child of the span current where it was triggered, and spans the
    # handler opens are children of the event's span.
    assert outer_span.parent is not None and outer_span.parent.span_id == request.context.span_id
    assert query.parent is not None and query.parent.span_id == outer_span.context.span_id
    assert inner_span.parent is not None and inner_span.parent.span_id == query.context.span_id
    assert {span.context.trace_id for span in exporter.get_finished_spans()} == {request.context.trace_id}


async def test_span_kind_and_uninstall(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = App()
    tracer = EventTracer(provider, kind=SpanKind.CONSUMER).install(app)

    @app.on_event("x")
    async def handler() -> None:
        pass

    await app.trigger_event("x")
    assert tracer.uninstall(app) is True
    await app.trigger_event("x")
    assert only_span(exporter, "x").kind is SpanKind.CONSUMER


async def test_context_is_restored_after_the_event(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    # Before-event hooks see the event's span; an observer called after the tracer, still in
    # the event's task, sees it detached again.
    app = App()
    EventTracer(provider).install(app)
    before_hook: list[trace.Span] = []
    after_tracer: list[trace.Span] = []

    class AfterTracer:
        def event_started(self, event: Event) -> None:
            pass

        def event_ended(self, event: Event) -> None:
            after_tracer.append(trace.get_current_span())

    app.add_event_observer(AfterTracer())

    @app.before_event
    async def before() -> None:
        before_hook.append(trace.get_current_span())

    @app.on_event("x")
    async def handler() -> None:
        pass

    await app.trigger_event("x")
    assert before_hook[0].get_span_context() == only_span(exporter, "x").get_span_context()
    assert after_tracer == [trace.INVALID_SPAN]


async def test_carrier_continues_the_trace_of_the_event_headers(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = App()
    EventTracer(provider, carrier=lambda event: event.data.get("headers")).install(app)
    tracer = provider.get_tracer("test")

    @app.on_event("job")
    async def job() -> None:
        pass

    headers: dict[str, str] = {}
    with tracer.start_as_current_span("publisher"):
        propagate.inject(headers)  # what another process would send along with the message
    assert "traceparent" in headers
    await app.trigger_event("job", data={"headers": headers})
    # Headers without a trace: the span current where the event is triggered stays the parent.
    with tracer.start_as_current_span("local"):
        await app.trigger_event("job", data={"headers": {"other": "header"}})
    await app.trigger_event("job")

    publisher, local = only_span(exporter, "publisher"), only_span(exporter, "local")
    remote_child, local_child, root = [span for span in exporter.get_finished_spans() if span.name == "job"]
    assert remote_child.parent is not None and remote_child.parent.span_id == publisher.context.span_id
    assert remote_child.parent.is_remote
    assert remote_child.context.trace_id == publisher.context.trace_id
    assert local_child.parent is not None and local_child.parent.span_id == local.context.span_id
    assert root.parent is None


async def test_a_failing_carrier_is_logged_and_the_event_still_runs(
    exporter: InMemorySpanExporter, provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    def broken_carrier(event: Event) -> dict[str, str]:
        raise KeyError("headers")

    EventTracer(provider, carrier=broken_carrier).install(app)

    @app.on_event("job")
    async def job() -> str:
        return "ran"

    assert await app.trigger_event("job") == "ran"
    assert only_span(exporter, "job").parent is None
    [record] = [record for record in caplog.records if record.name == "tiny_listener.otel"]
    assert "'job'" in record.getMessage() and record.exc_info is not None


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    monkeypatch.delitem(sys.modules, "tiny_listener.observability.otel")
    with pytest.raises(MissingExtraError, match=r"tiny-listener\[otel\]"):
        importlib.import_module("tiny_listener.observability.otel")
