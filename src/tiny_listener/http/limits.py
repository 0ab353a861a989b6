"""The limits and timeouts one HTTP server applies to every connection, and the clock that
times a request body against them."""

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
    - ``body_timeout``: seconds a request body may go without a byte arriving; and
      ``min_body_rate``: bytes a second a body must average once it has taken
      ``body_timeout`` seconds. A body breaking either gets ``408`` and a close. Time counts
      only while the server reads the body: not while a handler leaves ``max_body_buffer``
      bytes unread, nor while the client waits for ``100 Continue``.
    - ``max_connections``: connections open at once; past it the server stops accepting, and
      new clients wait in the listen backlog until a connection closes.
    """

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    max_body_buffer: int = 64 * 1024
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 20.0
    min_body_rate: float = 500.0
    max_connections: int = 1024


class BodyClock:
    """How long a request body has been awaited, sans-IO: the caller passes the time.

    The clock runs only while the server waits for body bytes (``pause``/``resume`` around
    flow control and ``100 Continue``); ``expired`` says whether the body broke
    ``body_timeout`` or ``min_body_rate``, and ``next_check`` when it could next do so.
    """

    __slots__ = ("_active", "_last_progress", "_limits", "_running_since", "received")

    def __init__(self, limits: Limits, now: float, running: bool = True) -> None:
        self._limits = limits
        self._active = 0.0  # seconds the clock ran before _running_since
        self._running_since: float | None = now if running else None
        self._last_progress = 0.0  # the active time when a byte last arrived
        self.received = 0

    def _active_at(self, now: float) -> float:
        running_since = self._running_since
        return self._active if running_since is None else self._active + (now - running_since)

    @property
    def running(self) -> bool:
        return self._running_since is not None

    def pause(self, now: float) -> None:
        if self._running_since is not None:
            self._active += now - self._running_since
            self._running_since = None

    def resume(self, now: float) -> None:
        if self._running_since is None:
            self._running_since = now

    def progress(self, size: int, now: float) -> None:
        """``size`` body bytes arrived."""
        self.received += size
        self._last_progress = self._active_at(now)

    def expired(self, now: float) -> str | None:
        """Return why the body took too long, or None while it is in time."""
        limits = self._limits
        active = self._active_at(now)
        if active - self._last_progress >= limits.body_timeout:
            return f"no request body bytes for {limits.body_timeout:.1f}s"
        if active >= limits.body_timeout + self.received / limits.min_body_rate:
            return f"request body slower than {limits.min_body_rate:g} bytes/s"
        return None

    def next_check(self, now: float) -> float | None:
        """Return when the body could next expire if no byte arrives, or None while paused."""
        if self._running_since is None:
            return None
        limits = self._limits
        active = self._active_at(now)
        idle_left = limits.body_timeout - (active - self._last_progress)
        rate_left = limits.body_timeout + self.received / limits.min_body_rate - active
        return now + max(min(idle_left, rate_left), 0.0)
