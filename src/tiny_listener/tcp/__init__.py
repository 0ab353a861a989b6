"""Raw TCP: each connection a context, each frame (a line, or length-prefixed) an event.

No extra is needed: it runs on asyncio's own transports. See ``docs/tcp.md``.
"""

from __future__ import annotations

from .connection import Connection as Connection
from .context import TCPContext as TCPContext
from .framing import FrameTooLarge as FrameTooLarge
from .framing import LengthPrefixFramer as LengthPrefixFramer
from .framing import LineFramer as LineFramer
from .listener import TCPListener as TCPListener
from .source import TCPSource as TCPSource
from .source import decode_line as decode_line

__all__ = (
    "Connection",
    "decode_line",
    "FrameTooLarge",
    "LengthPrefixFramer",
    "LineFramer",
    "TCPContext",
    "TCPListener",
    "TCPSource",
)
