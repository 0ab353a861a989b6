"""``HTTPListener``: an HTTP/1.1 server whose requests are tiny-listener events.

Each request becomes the event ``"METHOD:/decoded/path"`` in a new anonymous
:class:`~tiny_listener.http.HTTPContext` (which is also the request), released when the
event ends. What the handler returns is sent back; see :mod:`tiny_listener.http.responses`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List, Tuple, Type

from ..acceptor import Acceptor, OpenConnections
from ..context import Context
from ..errors import EventNotFound
from ..event import Event
from ..listener import Listener
from .body import RequestAborted
from .context import HTTPContext
from .limits import Limits
from .protocol import BaseServerConnection, ServerConnection
from .responses import StreamingResponse, to_response
from .server import NOT_STARTED, HTTPConnection, abandon_when_cancelled

logger = logging.getLogger("tiny_listener.http")

_TEXT = b"text/plain; charset=utf-8"
_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HTTPListener(Listener[HTTPContext]):
    """Serve HTTP/1.1 on ``host``:``port`` (default ``127.0.0.1:8000``; ``port=0`` picks a free
    port, readable from ``port`` once serving).

    Register handlers as ``@app.on_event("GET:/user/{username}")``. A request that no route
    matches gets 404, or 405 with ``Allow`` when the path has routes for other methods; HEAD is
    served by the GET route unless a ``HEAD:`` route matches; a handler that raises gets 500
    (logged with its traceback on ``tiny_listener``). One access line per request is logged on
    ``tiny_listener.http.access`` at INFO. ``limits`` bounds sizes and times (see
    :class:`~tiny_listener.http.Limits`); ``parser`` is ``"h11"`` (the default) or
    ``"httptools"`` (faster; needs the ``httptools`` extra). Other keyword arguments are the
    core listener's.

    Raises ``ValueError`` for an unknown parser and
    :class:`~tiny_listener.optional.MissingExtraError` if its library is not installed.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    backlog: int = 1024
    parser: str = "h11"

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        limits: Limits | None = None,
        parser: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if host is not None:
            self.host = host
        if port is not None:
            self.port = port
        if parser is not None:
            self.parser = parser
        self.limits = limits or Limits()
        self._protocol_cls = _protocol_class(self.parser)
        # True from the moment shutdown starts: new requests are answered "Connection: close".
        self.closing = False
        self._connections: OpenConnections[HTTPConnection] = OpenConnections()
        self._serving: asyncio.Event | None = None
        self.set_context_cls(HTTPContext)
        self.add_after_event_hook(self._send_result)
        self.add_on_error_hook(_request_aborted, RequestAborted)

    def set_context_cls(self, kls: Type[Context]) -> None:
        """Make request contexts instances of ``kls``; raises ``TypeError`` unless it is a
        subclass of :class:`HTTPContext`."""
        if not (isinstance(kls, type) and issubclass(kls, HTTPContext)):
            raise TypeError(f"{kls!r} must be a subclass of tiny_listener.http.HTTPContext")
        super().set_context_cls(kls)

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

    # ------------------------------------------------------------------ serving

    async def listen(self) -> None:
        """Serve until cancelled; then stop accepting, close idle connections and let busy
        ones close after their current response (the core waits for in-flight requests)."""
        self.closing = False
        self._protocol_cls = _protocol_class(self.parser)  # ``parser`` may have been set since
        server = Acceptor(lambda: HTTPConnection(self), self._connections, self.limits.max_connections, "HTTP")
        _, self.port = await server.bind(self.host, self.port, self.backlog)
        logger.info("HTTP server running on http://%s:%d", self.host, self.port)
        self._serving_event().set()
        try:
            await server.serve()  # until shutdown cancels listen()
        finally:
            self.closing = True
            server.close()
            for connection in list(self._connections):
                connection.shutdown()
            self.spawn(abandon_when_cancelled(self._connections), name="HTTP requests abandoned at shutdown")
            self._serving = None

    def _new_protocol(self) -> BaseServerConnection:
        return self._protocol_cls(self.limits)

    def _serving_event(self) -> asyncio.Event:
        if self._serving is None:
            self._serving = asyncio.Event()
        return self._serving

    async def wait_until_serving(self) -> None:
        """Return once ``listen()`` accepts connections (``port`` is then the bound port)."""
        await self._serving_event().wait()

    # ------------------------------------------------------------------ routing requests

    def _dispatch_request(self, ctx: HTTPContext) -> asyncio.Task[Any]:
        """Start the event of ``ctx``'s request; raises ``EventNotFound`` if no route matches."""
        method = ctx.method
        path = ctx.path
        if method == "HEAD":
            head_path = "HEAD:" + path
            try:
                route, _ = self.routes.match(head_path)
            except EventNotFound:
                pass
            else:
                if route.literal_prefix.startswith("HEAD:"):
                    return self.trigger_event_in(ctx, head_path)
            method = "GET"
        return self.trigger_event_in(ctx, f"{method}:{path}")

    def allowed_methods(self, path: str) -> List[str]:
        """Return the methods that have a route for ``path`` (with HEAD if GET has one)."""
        allowed: List[str] = []
        for route in self.routes.values():
            method, sep, _ = route.path.partition(":")
            if sep and method and set(method) <= _METHOD_CHARS and method not in allowed:
                if route.match_raw(f"{method}:{path}") is not None:
                    allowed.append(method)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        return allowed

    def _no_route_response(self, ctx: HTTPContext) -> Tuple[int, List[Tuple[bytes, bytes]], bytes]:
        allowed = self.allowed_methods(ctx.path)
        if allowed:
            body = b"Method Not Allowed"
            headers = [(b"allow", ", ".join(allowed).encode()), (b"content-type", _TEXT)]
            return 405, [*headers, (b"content-length", str(len(body)).encode())], body
        body = b"Not Found"
        return 404, [(b"content-type", _TEXT), (b"content-length", str(len(body)).encode())], body

    # ``Event`` without a parameter: the core's injection reads ``Event[Any]`` as no class.
    async def _send_result(self, event: Event) -> None:  # type: ignore[type-arg]
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
            body = result.encode()
            headers = [(b"content-type", _TEXT), (b"content-length", str(len(body)).encode())]
            connection.send_response(ctx, 200, headers, body)
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


async def _request_aborted(event: Event) -> None:  # type: ignore[type-arg]
    # Not a bug of the handler: the client left or broke a limit, and has been answered.
    logger.debug("request %s ended early: %s", event.path, event.error)
