"""Framing: cutting a TCP byte stream into frames and back, without any socket.

A framer only buffers: ``feed(data)`` returns the complete frames ``data`` finished, and
``encode(payload)`` returns the bytes that carry one frame. A frame longer than
``max_frame_size`` is a protocol error that cannot be recovered from (the rest of the stream
cannot be trusted to start at a frame boundary): ``feed`` then returns the frames that came
before it and sets ``error``; every later ``feed`` raises that error again.
"""

from __future__ import annotations

import struct
from typing import Generic, List, TypeVar, Union

from ..errors import ListenerError

Framer = Union["LineFramer", "LengthPrefixFramer"]
"""The framers :class:`~tiny_listener.tcp.TCPListener` knows by name."""


class FrameTooLarge(ListenerError):
    """A frame is longer than the framer's ``max_frame_size``."""

    def __init__(self, size: int, max_frame_size: int) -> None:
        super().__init__(f"frame of {size} bytes or more exceeds max_frame_size={max_frame_size}")
        self.size = size
        self.max_frame_size = max_frame_size


_Buffer = TypeVar("_Buffer", bytes, bytearray)


class _SizeLimitedFramer(Generic[_Buffer]):
    """What both framers share: ``max_frame_size``, the bytes of an unfinished frame, and the
    ``error`` that ends the stream once a frame exceeds the limit (see the module doc)."""

    _buffer: _Buffer

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self.error: FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished frame (with its header, if the framing has one) are held."""
        return len(self._buffer)

    def _fail(self, size: int) -> None:
        """End the stream on a frame of ``size`` bytes: keep the error, drop what is buffered."""
        self.error = FrameTooLarge(size, self.max_frame_size)
        self._buffer = self._buffer[:0]

    def _check_size(self, payload: bytes) -> None:
        """Raise :class:`FrameTooLarge` if ``payload`` is longer than ``max_frame_size``."""
        if len(payload) > self.max_frame_size:
            raise FrameTooLarge(len(payload), self.max_frame_size)


class LineFramer(_SizeLimitedFramer[bytes]):
    """Frames end with ``delimiter`` (``b"\\n"``); a ``b"\\r"`` before it is removed, so
    ``nc``/telnet lines ending in CRLF read the same as LF lines. ``max_frame_size`` does not
    count the delimiter."""

    def __init__(self, max_frame_size: int = 65536, delimiter: bytes = b"\n") -> None:
        if not delimiter:
            raise ValueError("the line delimiter must not be empty")
        super().__init__(max_frame_size)
        self.delimiter = delimiter
        self._buffer = b""

    def feed(self, data: bytes) -> List[bytes]:
        """Return the frames completed by ``data``, in order (see the module doc for errors)."""
        if self.error is not None:  # inline, not a method call: feed() is the hot path
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
        self._check_size(payload)
        return payload + self.delimiter


_HEADER = struct.Struct("!I")


class LengthPrefixFramer(_SizeLimitedFramer[bytearray]):
    """Each frame is a 4-byte big-endian unsigned length, then that many bytes."""

    header_size = _HEADER.size

    def __init__(self, max_frame_size: int = 65536) -> None:
        super().__init__(max_frame_size)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> List[bytes]:
        """Return the frames completed by ``data``, in order (see the module doc for errors)."""
        if self.error is not None:  # inline, not a method call: feed() is the hot path
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
                self._fail(size)
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
        self._check_size(payload)
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
