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
    the core listener's. The server itself is ``self.http``, the source this listener hosts.

    Raises ``ValueError`` for an unknown parser and
    :class:`~tiny_listener.optional.MissingExtraError` if its library is not installed.
    """

    # Defaults of the server's settings. A subclass may set them as class attributes
    # (``port = 9000``): __init_subclass__ moves those here, since the instance reads and sets
    # them on its source through the properties below.
    default_host: str = "127.0.0.1"
    default_port: int = 8000
    default_backlog: int = 1024
    default_parser: str = "h11"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _SERVER_SETTINGS:
            value = cls.__dict__.get(name)
            if value is not None and not isinstance(value, property):
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
        self.http = HTTPSource(
            host if host is not None else self.default_host,
            port if port is not None else self.default_port,
            limits=limits,
            parser=parser if parser is not None else self.default_parser,
            backlog=self.default_backlog,
            health=health,
            metrics=metrics,
        )
        self.add_source(self.http)
        super().set_context_cls(HTTPContext)

    def set_context_cls(self, kls: Type[Context]) -> None:
        """Make request contexts instances of ``kls``; raises ``TypeError`` unless it is a
        subclass of :class:`HTTPContext`."""
        if not (isinstance(kls, type) and issubclass(kls, HTTPContext)):
            raise TypeError(f"{kls!r} must be a subclass of tiny_listener.http.HTTPContext")
        super().set_context_cls(kls)
        self.http.context_cls = kls

    async def wait_until_serving(self) -> None:
        """Return once the listener accepts connections (``port`` is then the bound port)."""
        await self.http.wait_ready()

    def allowed_methods(self, path: str) -> List[str]:
        """Return the methods that have a route for ``path`` (with HEAD if GET has one)."""
        return self.http.allowed_methods(path)

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return self.http.connections

    @property
    def closing(self) -> bool:
        """True from the moment shutdown starts: new requests are answered ``Connection: close``."""
        return self.http.closing

    # The server's settings live on the source; the CLI sets host, port and parser here.

    @property
    def host(self) -> str:
        """Address the server binds."""
        return self.http.host

    @host.setter
    def host(self, value: str) -> None:
        self.http.host = value

    @property
    def sock(self) -> socket.socket | None:
        """A listening socket already bound, served instead of binding ``host``:``port`` (as
        ``tiny-listener run --fd`` and ``--workers`` pass one); None by default."""
        return self.http.sock

    @sock.setter
    def sock(self, value: socket.socket | None) -> None:
        self.http.sock = value

    @property
    def port(self) -> int:
        """Port the server binds; once serving, the bound port (when it was 0)."""
        return self.http.port

    @port.setter
    def port(self, value: int) -> None:
        self.http.port = value

    @property
    def parser(self) -> str:
        """``"h11"`` or ``"httptools"``."""
        return self.http.parser

    @parser.setter
    def parser(self, value: str) -> None:
        self.http.parser = value

    @property
    def backlog(self) -> int:
        """The listening socket's backlog."""
        return self.http.backlog

    @backlog.setter
    def backlog(self, value: int) -> None:
        self.http.backlog = value

    @property
    def limits(self) -> Limits:
        """The :class:`Limits` of the server."""
        return self.http.limits


_SERVER_SETTINGS = ("host", "port", "backlog", "parser")
