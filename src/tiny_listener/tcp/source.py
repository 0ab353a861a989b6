"""``TCPSource``: a TCP server where each connection is a context and each frame an event of
the listener that hosts it."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable, Dict, Set, Tuple, Type

from .._types import EventData
from ..codecs import Codec
from ..sources.base import Source, SourceState
from .connection import Connection, abandon_when_cancelled, format_address
from .context import TCPContext
from .framing import make_framer

logger = logging.getLogger("tiny_listener.tcp")


def decode_line(frame: bytes) -> str:
    """The default event path of a frame: its text, UTF-8 (invalid bytes become U+FFFD)."""
    return frame.decode("utf-8", "replace")


class TCPSource(Source):
    """Serve TCP on ``host``:``port`` (``port=0`` picks a free one, then ``port`` says which).

    Each connection gets a context whose cid is the peer address (``"127.0.0.1:54321"``),
    dropped when the connection closes. Each frame (a line, or with
    ``framing="length-prefixed"`` a 4-byte big-endian length and that many bytes) becomes an
    event: its path is ``event_path(frame)`` (by default the frame's UTF-8 text) and its data
    ``{"payload": frame}``, or with a ``codec`` the decoded frame (a decoded mapping is the data
    itself, as for the broker listeners). Handlers answer with ``ctx.send(...)`` or
    ``await ctx.write(...)``.

    A connection's frames run one at a time, in order, unless ``max_in_flight`` allows more.
    Beyond ``max_connections`` new connections are closed at once; a connection that sends
    nothing for ``idle_timeout`` seconds (``None``: never) while no frame of it is being
    handled, or that reads none of its replies for that long, is closed; a frame longer than
    ``max_frame_size`` closes its connection after the frames before it were handled. While a
    client leaves over 64 KiB of replies unread, its connection is not read and its next
    frames wait; replies sent without waiting that pile up past ``max_write_buffer`` bytes close
    it (see :mod:`tiny_listener.tcp.connection`). A frame that matches no route, or that ``event_path`` or
    the codec cannot read, is logged and skipped; a failing handler is logged by the core and
    the connection goes on. At shutdown the server stops accepting, every connection stops
    reading, the frames already received are handled, the replies sent, and the connections
    closed (all within ``shutdown_timeout``).

    ``sock``, if set before serving, is a listening socket that is already bound (as
    ``tiny-listener run --fd`` and ``--workers`` pass one): it is served instead of binding
    ``host``:``port``, which then say where it is bound.
    """

    kind = "tcp"

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
        name: str = "tcp",
    ) -> None:
        super().__init__(name=name)
        make_framer(framing, max_frame_size)  # fail now on a bad name, not per connection
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.host = host
        self.port = port
        self.framing = framing
        self.max_frame_size = max_frame_size
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_write_buffer = max_write_buffer
        self.max_in_flight = max_in_flight
        self.codec = codec
        self.event_path = event_path
        self.backlog = backlog
        self.context_cls = context_cls
        self.sock: socket.socket | None = None
        self._connections: Set[Connection] = set()
        self._accepting = False
        self._cid_suffix = 0

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

    def frame_data(self, frame: bytes) -> EventData:
        """Return the event data of ``frame``: ``{"payload": frame}``, or with a codec the
        decoded frame. Raises :class:`~tiny_listener.codecs.DecodeError` if it cannot decode."""
        if self.codec is None:
            return {"payload": frame}
        decoded = self.codec.decode(frame)
        return decoded if isinstance(decoded, dict) else {"payload": decoded}

    async def wait_listening(self) -> Tuple[str, int]:
        """Return ``(host, port)`` once the server accepts connections."""
        await self.wait_ready()
        return self.host, self.port

    def health(self) -> Dict[str, Any]:
        return {**super().health(), "address": f"{self.host}:{self.port}", "connections": len(self._connections)}

    async def serve(self) -> None:
        """Serve until cancelled at shutdown, then stop accepting and let every connection
        finish the frames it received."""
        loop = asyncio.get_running_loop()

        def new_connection() -> Connection:
            return Connection(self, make_framer(self.framing, self.max_frame_size))

        if self.sock is not None:
            server = await loop.create_server(new_connection, sock=self.sock, backlog=self.backlog)
        else:
            server = await loop.create_server(new_connection, self.host, self.port, backlog=self.backlog)
        self._accepting = True
        try:
            sockname = server.sockets[0].getsockname()
            if self.sock is not None:
                self.host = sockname[0]
            self.port = int(sockname[1])
            logger.info("TCP listener on %s (%s framing)", format_address(sockname), self.framing)
            self.set_state(SourceState.READY)
            await asyncio.Future()  # serve until cancelled
        finally:
            self._accepting = False
            server.close()
            for connection in list(self._connections):
                connection.stop_reading()
            self.listener.spawn(abandon_when_cancelled(self._connections), name="TCP connections abandoned at shutdown")
            if self._connections:
                logger.info("TCP listener stopped accepting; finishing %d connection(s)", len(self._connections))

    # ------------------------------------------------------------------ used by connections

    def _admit(self, connection: Connection) -> str | None:
        """Register ``connection`` and return None, or return why it is refused."""
        if not self._accepting:
            return "the listener is shutting down"
        if len(self._connections) >= self.max_connections:
            return f"max_connections={self.max_connections} reached"
        self._connections.add(connection)
        return None

    def _new_connection_ctx(self, connection: Connection) -> TCPContext:
        transport = connection._transport
        assert transport is not None
        cid = connection.peer
        listener = self.listener
        if cid in listener.ctxs:
            # The same address reconnecting before its previous context was dropped.
            self._cid_suffix += 1
            cid = f"{cid}#{self._cid_suffix}"
        scope: Dict[str, Any] = {
            "connection": connection,
            "peername": transport.get_extra_info("peername"),
            "sockname": transport.get_extra_info("sockname"),
        }
        ctx: TCPContext = listener.new_ctx(cid=cid, scope=scope, context_cls=self.context_cls)
        return ctx

    def spawn(self, coro: Any, *, name: str, drain: bool) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the hosting listener (see :meth:`Listener.spawn`)."""
        return self.listener.spawn(coro, name=name, drain=drain)

    def _forget(self, connection: Connection) -> None:
        self._connections.discard(connection)
