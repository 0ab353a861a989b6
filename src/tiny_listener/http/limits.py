"""The limits and timeouts one HTTP server applies to every connection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What a client may send, and how long it may take.

    - ``max_header_bytes``: request line plus headers; more is answered ``431``.
    - ``max_body_bytes``: a request body, whatever its framing; more is answered ``413``.
    - ``max_body_buffer``: body bytes held for a handler that has not read them yet; past it
      the server stops reading the socket until the handler catches up.
    - ``keep_alive_timeout``: seconds an idle connection waits for its next request.
    - ``header_timeout``: seconds a request has, from its first byte, to send all its headers
      (a slowloris client trickling bytes is cut off, with ``408``).
    """

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    max_body_buffer: int = 64 * 1024
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
