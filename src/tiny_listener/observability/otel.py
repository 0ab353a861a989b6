"""OpenTelemetry spans for events (``pip install 'tiny-listener[otel]'``).

    EventTracer().install(app)

Each event gets one span, named after its route's path (``GET:/user/{username}``), current
while its hooks and handler run, so spans the handler starts are its children and the event's
span is a child of whatever span was current when the event was triggered. Attributes:

- ``tiny_listener.event.path``: the event's path (``GET:/user/bob``)
- ``tiny_listener.route``: the route's path; ``tiny_listener.handler``: the handler's name
- ``tiny_listener.cid``: the context id
- ``tiny_listener.outcome``: done, failed or cancelled

A failed event records its exception on the span and sets the span's status to ERROR.
Spans go to the global tracer provider unless one is given; without an SDK configured they
are no-ops.

Across processes, give ``carrier``: a function returning the headers an event arrived with
(``traceparent``...), and the event's span continues the trace they carry, through the
globally configured propagator (W3C Trace Context by default).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..optional import require

# Importing this module without the extra raises MissingExtraError naming it.
require("opentelemetry.trace", extra="otel")

from opentelemetry import context as otel_context  # noqa: E402
from opentelemetry import propagate, trace  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: E402

from .. import __version__  # noqa: E402
from ..event import Event  # noqa: E402
from ..listener import Listener  # noqa: E402
from .metrics import FAILED_OUTCOME, event_outcome  # noqa: E402

PATH_ATTRIBUTE = "tiny_listener.event.path"
ROUTE_ATTRIBUTE = "tiny_listener.route"
HANDLER_ATTRIBUTE = "tiny_listener.handler"
CID_ATTRIBUTE = "tiny_listener.cid"
OUTCOME_ATTRIBUTE = "tiny_listener.outcome"

logger = logging.getLogger("tiny_listener.otel")

Carrier = Callable[[Event[Any]], Optional[Mapping[str, str]]]
"""Returns the headers an event arrived with (or None), to continue the trace they carry."""


class EventTracer:
    """An event observer that opens a span when an event's task starts and ends it when the
    task ends. ``kind`` is the spans' kind: INTERNAL by default; CONSUMER suits events made
    from broker messages, SERVER those made from requests. ``carrier(event)`` returns the
    headers to continue a trace from, if the event came with one."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        carrier: Carrier | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("tiny_listener", __version__, tracer_provider=tracer_provider)
        self.kind = kind
        self.carrier = carrier
        self._open: Dict[Event[Any], Tuple[trace.Span, contextvars.Token[Any]]] = {}

    def install(self, app: Listener[Any]) -> EventTracer:
        """Trace every event of ``app`` from now on; return ``self``."""
        app.add_event_observer(self)
        return self

    def uninstall(self, app: Listener[Any]) -> bool:
        """Stop tracing ``app``'s new events; return False if it was not traced."""
        return app.remove_event_observer(self)

    def event_started(self, event: Event[Any]) -> None:
        route = event.route
        span = self.tracer.start_span(
            route.path,
            context=self._remote_parent(event) if self.carrier is not None else None,
            kind=self.kind,
            attributes={
                PATH_ATTRIBUTE: event.path,
                ROUTE_ATTRIBUTE: route.path,
                HANDLER_ATTRIBUTE: route.name,
                CID_ATTRIBUTE: event.ctx.cid,
            },
        )
        # Observers run in the event's own task: what is attached here is seen by its
        # handler only, and detached in event_ended(), called in the same task.
        token = otel_context.attach(trace.set_span_in_context(span))
        self._open[event] = (span, token)

    def _remote_parent(self, event: Event[Any]) -> otel_context.Context | None:
        """The context carried by the event's headers; None (the current one) without any."""
        assert self.carrier is not None
        try:
            headers = self.carrier(event)
        except Exception:
            # A carrier that cannot read an event must not fail the event: trace it locally.
            logger.exception("reading trace headers of event %r failed", event.path)
            return None
        # Extracted over the current context: headers without a trace leave it as it is.
        return propagate.extract(headers, context=otel_context.get_current()) if headers else None

    def event_ended(self, event: Event[Any]) -> None:
        opened = self._open.pop(event, None)
        if opened is None:
            return
        span, token = opened
        outcome = event_outcome(event)
        span.set_attribute(OUTCOME_ATTRIBUTE, outcome)
        error = event.error
        if outcome == FAILED_OUTCOME and error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        otel_context.detach(token)
