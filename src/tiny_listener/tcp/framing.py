"""Framing: cutting a TCP byte stream into frames and back, without any socket.

A framer only buffers: ``feed(data)`` returns the complete frames ``data`` finished, and
``encode(payload)`` returns the bytes that carry one frame. A frame longer than
``max_frame_size`` is a protocol error that cannot be recovered from (the rest of the stream
cannot be trusted to start at a frame boundary): ``feed`` then returns the frames that came
before it and sets ``error``; every later ``feed`` raises that error again.
"""

from __future__ import annotations

import struct
from typing import List, Union

from ..errors import ListenerError

Framer = Union["LineFramer", "LengthPrefixFramer"]
"""The framers :class:`~tiny_listener.tcp.TCPListener` knows by name."""


class FrameTooLarge(ListenerError):
    """A frame is longer than the framer's ``max_frame_size``."""

    def __init__(self, size: int, max_frame_size: int) -> None:
        super().__init__(f"frame of {size} bytes or more exceeds max_frame_size={max_frame_size}")
        self.size = size
        self.max_frame_size = max_frame_size


class LineFramer:
    """Frames end with ``delimiter`` (``b"\\n"``); a ``b"\\r"`` before it is removed, so
    ``nc``/telnet lines ending in CRLF read the same as LF lines. ``max_frame_size`` does not
    count the delimiter."""

    def __init__(self, max_frame_size: int = 65536, delimiter: bytes = b"\n") -> None:
        if not delimiter:
            raise ValueError("the line delimiter must not be empty")
        self.max_frame_size = max_frame_size
        self.delimiter = delimiter
        self.error: FrameTooLarge | None = None
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished frame are held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> List[bytes]:
        """Return the frames completed by ``data``, in order (see the module doc for errors)."""
        if self.error is not None:
            raise self.error
        if self._buffer:
            data = self._buffer + data
        parts = data.split(self.delimiter)
        rest = parts.pop()
        limit = self.max_frame_size
        frames: List[bytes] = []
        for part in parts:
            if part[-1:] == b"\r":
                part = part[:-1]
            if len(part) > limit:
                self._fail(len(part))
                return frames
            frames.append(part)
        # A CR could still be the one before the next delimiter, hence the +1.
        if len(rest) > limit + 1:
            self._fail(len(rest))
            return frames
        self._buffer = rest
        return frames

    def encode(self, payload: bytes) -> bytes:
        """Return ``payload`` followed by the delimiter.

        Raises ``ValueError`` if ``payload`` contains the delimiter (it would arrive as two
        frames) and :class:`FrameTooLarge` if it is longer than ``max_frame_size``.
        """
        if self.delimiter in payload:
            raise ValueError(f"a line frame cannot contain the delimiter {self.delimiter!r}; send one line at a time")
        if len(payload) > self.max_frame_size:
            raise FrameTooLarge(len(payload), self.max_frame_size)
        return payload + self.delimiter

    def _fail(self, size: int) -> None:
        self.error = FrameTooLarge(size, self.max_frame_size)
        self._buffer = b""


_HEADER = struct.Struct("!I")


class LengthPrefixFramer:
    """Each frame is a 4-byte big-endian unsigned length, then that many bytes."""

    header_size = _HEADER.size

    def __init__(self, max_frame_size: int = 65536) -> None:
        self.max_frame_size = max_frame_size
        self.error: FrameTooLarge | None = None
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished frame (header included) are held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> List[bytes]:
        """Return the frames completed by ``data``, in order (see the module doc for errors)."""
        if self.error is not None:
            raise self.error
        buffer = self._buffer
        buffer += data
        frames: List[bytes] = []
        start = 0
        end = len(buffer)
        header = self.header_size
        while end - start >= header:
            (size,) = _HEADER.unpack_from(buffer, start)
            if size > self.max_frame_size:
                self.error = FrameTooLarge(size, self.max_frame_size)
                self._buffer = bytearray()
                return frames
            if end - start - header < size:
                break
            frames.append(bytes(buffer[start + header : start + header + size]))
            start += header + size
        if start:
            del buffer[:start]
        return frames

    def encode(self, payload: bytes) -> bytes:
        """Return the length header followed by ``payload``.

        Raises :class:`FrameTooLarge` if ``payload`` is longer than ``max_frame_size``.
        """
        if len(payload) > self.max_frame_size:
            raise FrameTooLarge(len(payload), self.max_frame_size)
        return _HEADER.pack(len(payload)) + payload


def make_framer(framing: str, max_frame_size: int) -> Framer:
    """Return a new framer for ``framing`` (``"line"`` or ``"length-prefixed"``).

    Raises ``ValueError`` for another name.
    """
    if framing == "line":
        return LineFramer(max_frame_size)
    if framing == "length-prefixed":
        return LengthPrefixFramer(max_frame_size)
    raise ValueError(f"unknown framing {framing!r}: use 'line' or 'length-prefixed'")
