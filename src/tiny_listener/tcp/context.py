"""The context of one TCP connection: handlers reply through it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from ..context import Context

if TYPE_CHECKING:
    from .connection import Connection

Sendable = Union[bytes, bytearray, memoryview, str]
"""What a handler can send: bytes, or text sent as UTF-8."""


def _as_bytes(data: Sendable) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"can only send bytes or str, not {type(data).__name__}")


class TCPContext(Context):
    """One connection's context; its cid is the peer address (``"127.0.0.1:54321"``).

    ``scope["connection"]`` is the :class:`~tiny_listener.tcp.connection.Connection`,
    ``scope["peername"]`` and ``scope["sockname"]`` the addresses of both ends. Subclass it
    and pass ``context_cls=`` to the listener to add methods.
    """

    @property
    def connection(self) -> Connection:
        connection: Connection = self.scope["connection"]
        return connection

    def send(self, data: Sendable) -> None:
        """Send ``data`` as one frame, without waiting (the transport buffers it).

        Raises ``ValueError``/:class:`~tiny_listener.tcp.FrameTooLarge` if it cannot be one
        frame (a newline inside a line frame, or too long), ``TypeError`` for other types.
        Data sent after the client went away is dropped (logged at debug level).
        """
        self.connection.send(_as_bytes(data))

    async def write(self, data: Sendable) -> None:
        """Send ``data`` as one frame and wait until the send buffer has room again: use it
        for large or many replies, so a slow client slows its handler instead of filling memory.

        Raises as :meth:`send` does, and ``ConnectionResetError`` if the connection is closed.
        """
        self.connection.send(_as_bytes(data))
        await self.connection.drain()

    def close(self) -> None:
        """Read no more frames from this client; the connection closes once the frames
        already received have been handled and the replies sent."""
        self.connection.stop_reading()
