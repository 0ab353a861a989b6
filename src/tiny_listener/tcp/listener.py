"""``TCPListener``: a listener that hosts one :class:`~tiny_listener.tcp.TCPSource`."""

from __future__ import annotations

import socket
from typing import Callable, Tuple, Type

from .._types import EventData
from ..codecs import Codec
from ..listener import Listener
from ..sources._attribute import SourceAttribute
from .context import TCPContext
from .source import TCPSource, decode_line


class TCPListener(Listener[TCPContext]):
    """Serve TCP on ``host``:``port``; each connection is a context, each frame an event.

    The arguments are :class:`~tiny_listener.tcp.TCPSource`'s (which says what each does) and
    the core listener's ``max_event_history`` and ``shutdown_timeout``. ``app.source`` is the
    :class:`~tiny_listener.tcp.TCPSource` serving; its settings are attributes of both. To
    serve TCP beside another source, host a ``TCPSource`` on that listener instead.
    """

    host: SourceAttribute[str] = SourceAttribute()
    port: SourceAttribute[int] = SourceAttribute()
    sock: SourceAttribute[socket.socket | None] = SourceAttribute()
    framing: SourceAttribute[str] = SourceAttribute()
    max_frame_size: SourceAttribute[int] = SourceAttribute()
    max_connections: SourceAttribute[int] = SourceAttribute()
    idle_timeout: SourceAttribute[float | None] = SourceAttribute()
    max_write_buffer: SourceAttribute[int] = SourceAttribute()
    max_in_flight: SourceAttribute[int] = SourceAttribute()
    codec: SourceAttribute[Codec | None] = SourceAttribute()
    event_path: SourceAttribute[Callable[[bytes], str]] = SourceAttribute()
    backlog: SourceAttribute[int] = SourceAttribute()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8888,
        *,
        framing: str = "line",
        max_frame_size: int = 65536,
        max_connections: int = 1024,
        idle_timeout: float | None = 300.0,
        max_write_buffer: int = 1024 * 1024,
        max_in_flight: int = 1,
        codec: Codec | None = None,
        event_path: Callable[[bytes], str] = decode_line,
        context_cls: Type[TCPContext] = TCPContext,
        backlog: int = 128,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(max_event_history=max_event_history, shutdown_timeout=shutdown_timeout)
        self.source: TCPSource = TCPSource(
            host,
            port,
            framing=framing,
            max_frame_size=max_frame_size,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            max_write_buffer=max_write_buffer,
            max_in_flight=max_in_flight,
            codec=codec,
            event_path=event_path,
            context_cls=context_cls,
            backlog=backlog,
        )
        self.add_source(self.source)
        self.set_context_cls(context_cls)

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return self.source.connections

    def frame_data(self, frame: bytes) -> EventData:
        """Return the event data of ``frame`` (see :meth:`TCPSource.frame_data`)."""
        return self.source.frame_data(frame)

    async def wait_listening(self) -> Tuple[str, int]:
        """Return ``(host, port)`` once the server accepts connections."""
        return await self.source.wait_listening()
