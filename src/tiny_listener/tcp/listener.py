"""``TCPListener``: a listener that hosts one :class:`~tiny_listener.tcp.TCPSource`."""

from __future__ import annotations

import socket
from typing import Any, Callable, Tuple, Type

from .._types import EventData
from ..codecs import Codec
from ..listener import Listener
from .context import TCPContext
from .source import TCPSource, decode_line


class TCPListener(Listener[TCPContext]):
    """Serve TCP on ``host``:``port``; each connection is a context, each frame an event.

    The arguments are :class:`~tiny_listener.tcp.TCPSource`'s (which says what each does) and
    the core listener's ``max_event_history`` and ``shutdown_timeout``. The server itself is
    ``self.tcp``, the source this listener hosts; to serve TCP beside another source, host a
    ``TCPSource`` on that listener instead.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8888,
        *,
        framing: str = "line",
        max_frame_size: int = 65536,
        max_connections: int = 1024,
        idle_timeout: float | None = 300.0,
        max_in_flight: int = 1,
        codec: Codec | None = None,
        event_path: Callable[[bytes], str] = decode_line,
        context_cls: Type[TCPContext] = TCPContext,
        backlog: int = 128,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(max_event_history=max_event_history, shutdown_timeout=shutdown_timeout)
        self.tcp = TCPSource(
            host,
            port,
            framing=framing,
            max_frame_size=max_frame_size,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            max_in_flight=max_in_flight,
            codec=codec,
            event_path=event_path,
            context_cls=context_cls,
            backlog=backlog,
        )
        self.add_source(self.tcp)
        self.set_context_cls(context_cls)

    @property
    def host(self) -> str:
        """Address the server binds."""
        return self.tcp.host

    @host.setter
    def host(self, value: str) -> None:
        self.tcp.host = value

    @property
    def sock(self) -> socket.socket | None:
        """A listening socket already bound, served instead of binding ``host``:``port`` (as
        ``tiny-listener run --fd`` and ``--workers`` pass one); None by default."""
        return self.tcp.sock

    @sock.setter
    def sock(self, value: socket.socket | None) -> None:
        self.tcp.sock = value

    @property
    def port(self) -> int:
        """Port the server binds; once serving, the bound port (when it was 0)."""
        return self.tcp.port

    @port.setter
    def port(self, value: int) -> None:
        self.tcp.port = value

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return self.tcp.connections

    def frame_data(self, frame: bytes) -> EventData:
        """Return the event data of ``frame`` (see :meth:`TCPSource.frame_data`)."""
        return self.tcp.frame_data(frame)

    async def wait_listening(self) -> Tuple[str, int]:
        """Return ``(host, port)`` once the server accepts connections."""
        return await self.tcp.wait_listening()

    def __getattr__(self, name: str) -> Any:
        # The other settings (framing, max_frame_size, idle_timeout...) are read from the source.
        if name.startswith("_") or name == "tcp":
            raise AttributeError(name)
        return getattr(self.tcp, name)
