"""``HTTPListener``: a listener that hosts one :class:`~tiny_listener.http.HTTPSource`.

Each request becomes the event ``"METHOD:/decoded/path"`` in a new anonymous
:class:`~tiny_listener.http.HTTPContext` (which is also the request), released when the
event ends. What the handler returns is sent back; see :mod:`tiny_listener.http.responses`.
To serve HTTP beside another source (a broker consumer's health probes), host an
``HTTPSource`` on that listener instead.
"""

from __future__ import annotations

import socket
from typing import Any, List, Type

from ..context import Context
from ..listener import Listener
from ..sources._attribute import SourceAttribute
from .context import HTTPContext
from .limits import Limits
from .source import HTTPSource, MetricsExposition


class HTTPListener(Listener[HTTPContext]):
    """Serve HTTP/1.1 on ``host``:``port`` (default ``127.0.0.1:8000``; ``port=0`` picks a free
    port, readable from ``port`` once serving).

    Register handlers as ``@app.on_event("GET:/user/{username}")``. A request that no route
    matches gets 404, or 405 with ``Allow`` when the path has routes for other methods; HEAD is
    served by the GET route unless a ``HEAD:`` route matches; a handler that raises gets 500
    (logged with its traceback on ``tiny_listener``). One access line per request is logged on
    ``tiny_listener.http.access`` at INFO. ``limits`` bounds sizes and times (see
    :class:`~tiny_listener.http.Limits`); ``parser`` is ``"h11"`` (the default) or
    ``"httptools"`` (faster; needs the ``httptools`` extra); ``health`` and ``metrics`` add the
    built-in endpoints of :class:`~tiny_listener.http.HTTPSource`. Other keyword arguments are
    the core listener's.

    ``app.source`` is the :class:`~tiny_listener.http.HTTPSource` serving; the server's settings
    (``host``, ``port``, ``parser``, ``backlog``, ``sock``, ``limits``) are attributes of both.

    Raises ``ValueError`` for an unknown parser and
    :class:`~tiny_listener.optional.MissingExtraError` if its library is not installed.
    """

    # Defaults of the server's settings. A subclass may set them as class attributes
    # (``port = 9000``): __init_subclass__ moves those here, since the attributes below read
    # and set them on the source.
    default_host: str = "127.0.0.1"
    default_port: int = 8000
    default_backlog: int = 1024
    default_parser: str = "h11"

    host: SourceAttribute[str] = SourceAttribute()
    port: SourceAttribute[int] = SourceAttribute()
    parser: SourceAttribute[str] = SourceAttribute()
    backlog: SourceAttribute[int] = SourceAttribute()
    sock: SourceAttribute[socket.socket | None] = SourceAttribute()
    limits: SourceAttribute[Limits] = SourceAttribute()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("host", "port", "backlog", "parser"):
            value = cls.__dict__.get(name)
            if value is not None and not isinstance(value, SourceAttribute):
                setattr(cls, f"default_{name}", value)
                delattr(cls, name)

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        limits: Limits | None = None,
        parser: str | None = None,
        health: bool = False,
        metrics: MetricsExposition | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source: HTTPSource = self.add_source(
            HTTPSource(
                host if host is not None else self.default_host,
                port if port is not None else self.default_port,
                limits=limits,
                parser=parser if parser is not None else self.default_parser,
                backlog=self.default_backlog,
                health=health,
                metrics=metrics,
            )
        )
        super().set_context_cls(HTTPContext)

    def set_context_cls(self, kls: Type[Context]) -> None:
        """Make request contexts instances of ``kls``; raises ``TypeError`` unless it is a
        subclass of :class:`HTTPContext`."""
        if not (isinstance(kls, type) and issubclass(kls, HTTPContext)):
            raise TypeError(f"{kls!r} must be a subclass of tiny_listener.http.HTTPContext")
        super().set_context_cls(kls)
        self.source.context_cls = kls

    async def wait_until_serving(self) -> None:
        """Return once the listener accepts connections (``port`` is then the bound port)."""
        await self.source.wait_ready()

    def allowed_methods(self, path: str) -> List[str]:
        """Return the methods that have a route for ``path`` (with HEAD if GET has one)."""
        return self.source.allowed_methods(path)

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return self.source.connections

    @property
    def closing(self) -> bool:
        """True from the moment shutdown starts: new requests are answered ``Connection: close``."""
        return self.source.closing
