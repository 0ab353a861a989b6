"""``HTTPSource``: an HTTP/1.1 server whose requests become events of any listener.

Each request becomes the event ``"METHOD:/decoded/path"`` in a new anonymous
:class:`~tiny_listener.http.HTTPContext` (which is also the request), released when the
event ends. What the handler returns is sent back; see :mod:`tiny_listener.http.responses`.
The source can also answer health and readiness probes and Prometheus scrapes itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Protocol, Tuple, Type

from ..acceptor import Acceptor, OpenConnections
from ..errors import EventNotFound
from ..event import Event
from ..sources.base import Source, SourceState
from .body import RequestAborted
from .context import HTTPContext
from .limits import Limits
from .protocol import BaseServerConnection, ServerConnection
from .responses import StreamingResponse, to_response
from .server import NOT_STARTED, HTTPConnection, abandon_when_cancelled

if TYPE_CHECKING:
    from ..listener import Listener

logger = logging.getLogger("tiny_listener.http")

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

Answer = Tuple[int, List[Tuple[bytes, bytes]], bytes]
"""A response the source makes itself: status, header items, body."""


class MetricsExposition(Protocol):
    """What ``/metrics`` serves: :class:`~tiny_listener.observability.PrometheusExporter` is one."""

    content_type: str

    def generate_latest(self) -> bytes: ...


class HTTPSource(Source):
    """Serve HTTP/1.1 on ``host``:``port`` (``port=0`` picks a free port, readable from
    ``port`` once serving) for the listener that hosts it.

    A request that no route matches gets 404, or 405 with ``Allow`` when the path has routes
    for other methods; HEAD is served by the GET route unless a ``HEAD:`` route matches; a
    handler that raises gets 500. One access line per request is logged on
    ``tiny_listener.http.access`` at INFO. ``limits`` bounds sizes and times (see
    :class:`~tiny_listener.http.Limits`); ``parser`` is ``"h11"`` (the default) or
    ``"httptools"`` (needs the ``httptools`` extra).

    Built-in endpoints, answered by the source before routing (GET and HEAD only):

    - ``health=True``: ``/healthz`` answers 200 while the process serves (liveness), and
      ``/readyz`` answers 200 when the listener is ready (every source it hosts takes messages
      in and it is not shutting down) and 503 otherwise, both with the listener's
      :meth:`~tiny_listener.Listener.health` report as JSON.
    - ``metrics=exporter`` (a :class:`~tiny_listener.observability.PrometheusExporter`):
      ``/metrics`` answers its Prometheus text, from the event loop, with no extra thread.

    ``sock``, if set before serving, is a listening socket that is already bound (as
    ``tiny-listener run --fd`` and ``--workers`` pass one): it is served instead of binding
    ``host``:``port``, which then say where it is bound.

    Raises ``ValueError`` for an unknown parser and
    :class:`~tiny_listener.optional.MissingExtraError` if its library is not installed.
    """

    kind = "http"
    health_path = "/healthz"
    ready_path = "/readyz"
    metrics_path = "/metrics"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        limits: Limits | None = None,
        parser: str = "h11",
        backlog: int = 1024,
        health: bool = False,
        metrics: MetricsExposition | None = None,
        context_cls: Type[HTTPContext] = HTTPContext,
        name: str = "http",
    ) -> None:
        super().__init__(name=name)
        self.host = host
        self.port = port
        self.backlog = backlog
        self.parser = parser
        self.limits = limits or Limits()
        self._protocol_cls = _protocol_class(parser)
        self.context_cls = _check_context_cls(context_cls)
        self.health_endpoints = health
        self.metrics = metrics
        self.sock: socket.socket | None = None
        # True from the moment shutdown starts: new requests are answered "Connection: close".
        self.closing = False
        self._connections: OpenConnections[HTTPConnection] = OpenConnections()
        self._endpoints: Dict[str, Callable[[], Answer]] = {}

    def attach(self, listener: Listener[Any]) -> None:
        # One set of hooks per listener, however many HTTP sources it hosts (this one is not
        # among listener.sources yet).
        first = not any(isinstance(source, HTTPSource) for source in listener.sources)
        super().attach(listener)
        if first:
            listener.add_after_event_hook(_send_result)
            listener.add_on_error_hook(_request_aborted, RequestAborted)

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

    # ------------------------------------------------------------------ serving

    async def serve(self) -> None:
        """Serve until cancelled; then stop accepting, close idle connections and let busy
        ones close after their current response (the listener waits for in-flight requests)."""
        self.closing = False
        self._protocol_cls = _protocol_class(self.parser)  # ``parser`` may have been set since
        self._endpoints = self._builtin_endpoints()
        server = Acceptor(lambda: HTTPConnection(self), self._connections, self.limits.max_connections, "HTTP")
        if self.sock is not None:
            self.host, self.port = server.adopt(self.sock)
        else:
            _, self.port = await server.bind(self.host, self.port, self.backlog)
        logger.info("HTTP server running on http://%s:%d", self.host, self.port)
        self.set_state(SourceState.READY)
        try:
            await server.serve()  # until shutdown cancels serve()
        finally:
            self.closing = True
            server.close()
            for connection in list(self._connections):
                connection.shutdown()
            # Cancelled with the events still running at the shutdown deadline: answers their
            # requests then, whatever their handlers do with the cancellation.
            self.listener.spawn(abandon_when_cancelled(self._connections), name="HTTP requests abandoned at shutdown")

    async def close(self) -> None:
        """Close the connections still open once in-flight requests ended."""
        for connection in list(self._connections):
            connection.shutdown()

    def _new_protocol(self) -> BaseServerConnection:
        return self._protocol_cls(self.limits)

    def new_ctx(self) -> HTTPContext:
        """Return a new anonymous request context of the hosting listener; raises
        :class:`~tiny_listener.sources.base.SourceNotAttached` if there is none."""
        listener = self._listener or self.listener  # the property raises; once per request
        ctx: HTTPContext = listener.new_ctx(context_cls=self.context_cls)
        return ctx

    # ------------------------------------------------------------------ routing requests

    def _dispatch_request(self, ctx: HTTPContext) -> asyncio.Task[Any]:
        """Start the event of ``ctx``'s request; raises ``EventNotFound`` if no route matches."""
        listener = self._listener or self.listener
        method = ctx.method
        path = ctx.path
        if method == "HEAD":
            head_path = "HEAD:" + path
            try:
                route, _ = listener.routes.match(head_path)
            except EventNotFound:
                pass
            else:
                if route.literal_prefix.startswith("HEAD:"):
                    return listener.trigger_event_in(ctx, head_path)
            method = "GET"
        return listener.trigger_event_in(ctx, f"{method}:{path}")

    def builtin_answer(self, ctx: HTTPContext) -> Answer | None:
        """Return the answer of a built-in endpoint (health, readiness, metrics) for ``ctx``'s
        request, or None if it is not one."""
        endpoint = self._endpoints.get(ctx.path)
        if endpoint is None or ctx.method not in ("GET", "HEAD"):
            return None
        return endpoint()

    def _builtin_endpoints(self) -> Dict[str, Callable[[], Answer]]:
        endpoints: Dict[str, Callable[[], Answer]] = {}
        if self.health_endpoints:
            endpoints[self.health_path] = self._health_answer
            endpoints[self.ready_path] = self._ready_answer
        if self.metrics is not None:
            endpoints[self.metrics_path] = self._metrics_answer
        return endpoints

    def _health_answer(self) -> Answer:
        return _json_answer(200, self.listener.health())

    def _ready_answer(self) -> Answer:
        report = self.listener.health()
        return _json_answer(200 if report["status"] == "ready" else 503, report)

    def _metrics_answer(self) -> Answer:
        assert self.metrics is not None
        body = self.metrics.generate_latest()
        content_type = self.metrics.content_type.encode()
        return 200, [(b"content-type", content_type), (b"content-length", str(len(body)).encode())], body

    def allowed_methods(self, path: str) -> List[str]:
        """Return the methods that have a route for ``path`` (with HEAD if GET has one)."""
        allowed: List[str] = []
        for route in self.listener.routes.values():
            method, sep, _ = route.path.partition(":")
            if sep and method and set(method) <= _METHOD_CHARS and method not in allowed:
                if route.match_raw(f"{method}:{path}") is not None:
                    allowed.append(method)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        return allowed

    def _no_route_response(self, ctx: HTTPContext) -> Answer:
        allowed = self.allowed_methods(ctx.path)
        if allowed:
            body = b"Method Not Allowed"
            headers = [(b"allow", ", ".join(allowed).encode()), (b"content-type", _TEXT)]
            return 405, [*headers, (b"content-length", str(len(body)).encode())], body
        body = b"Not Found"
        return 404, [(b"content-type", _TEXT), (b"content-length", str(len(body)).encode())], body

    def health(self) -> Dict[str, Any]:
        return {**super().health(), "url": f"http://{self.host}:{self.port}", "connections": len(self._connections)}


def _json_answer(status: int, document: Dict[str, Any]) -> Answer:
    body = json.dumps(document).encode()
    return status, [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())], body


# ``Event`` without a parameter: the core's injection reads ``Event[Any]`` as no class.
async def _send_result(event: Event) -> None:  # type: ignore[type-arg]
    """After-event hook: send what the handler returned, unless it answered already."""
    ctx = event.ctx
    if not isinstance(ctx, HTTPContext) or ctx._response_state != NOT_STARTED:
        return
    connection = ctx._connection
    if connection is None:
        return  # an event this app triggered itself, not a request
    result = event.result
    if type(result) is str:
        # The most common answer, sent without building a Response object.
        connection.send_text(ctx, result.encode())
        return
    response = to_response(result)
    if isinstance(response, StreamingResponse):
        await connection.stream_response(ctx, response)
    else:
        connection.send_response(ctx, response.status_code, response.head_items(), response.body)


def _protocol_class(parser: str) -> Type[BaseServerConnection]:
    if parser == "h11":
        return ServerConnection
    if parser == "httptools":
        from .httptools_protocol import HttptoolsConnection  # imports httptools, an optional extra

        return HttptoolsConnection
    raise ValueError(f"unknown HTTP parser {parser!r}: use 'h11' or 'httptools'")


def _check_context_cls(kls: Type[HTTPContext]) -> Type[HTTPContext]:
    if not (isinstance(kls, type) and issubclass(kls, HTTPContext)):
        raise TypeError(f"{kls!r} must be a subclass of tiny_listener.http.HTTPContext")
    return kls


async def _request_aborted(event: Event) -> None:  # type: ignore[type-arg]
    # Not a bug of the handler: the client left or broke a limit, and has been answered.
    logger.debug("request %s ended early: %s", event.path, event.error)
