"""The server side of one HTTP/1.1 connection, sans-IO, parsed by httptools (llhttp).

:class:`HttptoolsConnection` has the API of :class:`~tiny_listener.http.protocol.ServerConnection`
(the h11 one, the default) and answers the same way; it parses several times faster. Select it
with ``HTTPListener(parser="httptools")`` after ``pip install 'tiny-listener[httptools]'``.

llhttp parses every byte it is fed at once, pipelined requests included, so parsed events
wait in a queue: ``next_event`` hands out the current request's head and body, then reports
``PAUSED`` until its response is finished, as h11 does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Deque, List, Tuple

from ..optional import require
from .limits import Limits
from .protocol import (
    BODY_END,
    CLIENT_CLOSED,
    NEED_DATA,
    PAUSED,
    BaseServerConnection,
    BodyChunk,
    ConnectionEvent,
    Cycle,
    ProtocolFailure,
    RequestHead,
)

if TYPE_CHECKING:
    import httptools
else:
    httptools = require("httptools", extra="httptools")

# The size a queued request head counts for in ``buffered_bytes`` (its exact size is not kept).
_HEAD_WEIGHT = 256
# Queue entries are (event, size counted in buffered_bytes), and for a head also
# (keep_alive, http10).
_BODY_END_ENTRY = (BODY_END, 0)


class _StopParsing(Exception):
    """Raised in a parser callback to stop at a limit; the failure is in ``_failure``."""


# RequestHead(...) runs the Python __new__ of a named tuple; this builds the same tuple in C.
_new_head = tuple.__new__
# Methods as str, without decoding them per request.
_METHODS = {
    method.encode(): method for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
}


class HttptoolsConnection(BaseServerConnection):
    """One HTTP/1.1 connection seen from the server, parsed by httptools."""

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self._parser = httptools.HttpRequestParser(self)
        self._queue: Deque[Any] = deque()
        self._queued_bytes = 0
        self._failure: ProtocolFailure | None = None
        self._stopped = False  # after a failure or an upgrade, nothing more is parsed
        self._max_header_bytes = self.limits.max_header_bytes
        # The message being parsed.
        self._in_message = False
        self._in_head = False
        self._head_bytes = 0
        self._raw_head_bytes = 0
        self._url = b""
        self._headers: List[Tuple[bytes, bytes]] = []
        self._parsed_body_size = 0
        # The request handed out by next_event, until finish_cycle.
        self._current_open = False
        self._current_body_done = False
        self._skipping_body = False

    # ------------------------------------------------------------------ parser callbacks

    # The callbacks run once or more per request: the head's size is counted inline.

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers = []
        self._parsed_body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header_bytes:
            self._stop_at_header_limit()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_header_bytes:
            self._stop_at_header_limit()

    def _stop_at_header_limit(self) -> None:
        self._stop(431, f"request headers are over {self._max_header_bytes} bytes")

    def _stop(self, status_code: int, reason: str) -> None:
        self._failure = ProtocolFailure(status_code, reason)
        raise _StopParsing(reason)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        close = connection_header = expects_continue = False
        for name, value in self._headers:
            if name == b"content-length":
                if int(value) > self.limits.max_body_bytes:
                    self._stop(413, f"request body is over {self.limits.max_body_bytes} bytes")
            elif name == b"transfer-encoding":
                if value.rsplit(b",", 1)[-1].strip().lower() != b"chunked":
                    self._stop(501, "only Transfer-Encoding: chunked is supported")
            elif name == b"connection":
                connection_header = True
                if b"close" in value.lower():
                    close = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expects_continue = True
        # llhttp parses HTTP 0.9, 1.0, 1.1 and 2.0, and without a Connection header keeps only
        # 1.1 alive: should_keep_alive() then tells 1.1 apart without get_http_version(),
        # which formats a new str for every request.
        if not connection_header and parser.should_keep_alive():
            version = "1.1"
        else:
            version = parser.get_http_version()
        http11 = version == "1.1"
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        head = _new_head(
            RequestHead, (method, self._url.decode("ascii"), version, self._headers, expects_continue and http11)
        )
        # A head's entry also says how to answer it: keep-alive, HTTP/1.0.
        self._queue.append((head, _HEAD_WEIGHT, http11 and not close, not http11))
        self._queued_bytes += _HEAD_WEIGHT

    def on_body(self, body: bytes) -> None:
        self._parsed_body_size += len(body)
        if self._parsed_body_size > self.limits.max_body_bytes:
            self._stop(413, f"request body is over {self.limits.max_body_bytes} bytes")
        self._enqueue(BodyChunk(bytes(body)), len(body))

    def on_message_complete(self) -> None:
        self._in_message = False
        self._queue.append(_BODY_END_ENTRY)

    def _enqueue(self, item: Any, size: int) -> None:
        self._queue.append((item, size))
        self._queued_bytes += size

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Parse bytes from the client; ``b""`` means the client closed its side."""
        if self._stopped:
            return
        if not data:
            self._stopped = True
            if self._in_message:
                self._enqueue(ProtocolFailure(400, "the client closed the connection mid-request"), 0)
            else:
                self._enqueue(CLIENT_CLOSED, 0)
            return
        was_in_head = self._in_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades are not supported: the request is answered as usual, then the connection closed.
            self._stopped = True
            self._close_requested = True
        except httptools.HttpParserCallbackError:
            self._stopped = True
            self._enqueue(self._failure or ProtocolFailure(400, "invalid request"), 0)
        except httptools.HttpParserError as exc:
            self._stopped = True
            self._enqueue(ProtocolFailure(400, str(exc) or "invalid request"), 0)
        else:
            if self._in_head:
                # llhttp keeps a partial header to itself: bound the head by the raw bytes fed.
                self._raw_head_bytes = (self._raw_head_bytes if was_in_head else 0) + len(data)
                if self._raw_head_bytes > self.limits.max_header_bytes:
                    self._stopped = True
                    reason = f"request headers are over {self.limits.max_header_bytes} bytes"
                    self._enqueue(ProtocolFailure(431, reason), 0)

    @property
    def buffered_bytes(self) -> int:
        """Roughly how many received bytes wait in parsed events not handed out yet."""
        return self._queued_bytes

    @property
    def has_partial_request(self) -> bool:
        """True when some bytes of a next request have arrived, but not its whole head."""
        return self._in_head

    def next_event(self) -> ConnectionEvent:
        """Return the next thing the client said, or ``NEED_DATA`` / ``PAUSED``.

        A :class:`ProtocolFailure` is final: answer it with ``reject`` and close.
        """
        queue = self._queue
        while queue:
            entry = queue[0]
            item = entry[0]
            kind = type(item)
            if kind is RequestHead:
                if self._current_open:
                    return PAUSED  # the current request is answered first
                queue.popleft()
                self._queued_bytes -= _HEAD_WEIGHT
                self._reset_response()
                self._keep_alive = entry[2]
                self._http10 = entry[3]
                self._head_request = item.method == "HEAD"
                self._continue_pending = item.expects_continue
                self._current_open = True
                self._current_body_done = False
                return item  # type: ignore[no-any-return]
            if item is BODY_END:
                queue.popleft()
                if not self._skipping_body:
                    self._current_body_done = True
                    return BODY_END  # type: ignore[no-any-return,unused-ignore]
                self._skipping_body = False
                continue
            size = entry[1]
            if kind is ProtocolFailure:
                if self._current_open and self._current_body_done:
                    return PAUSED  # it is about a later request
                self._take(size)
                if not self._current_open:
                    # About a request after the last answered one: it gets its own answer,
                    # framed afresh (the previous response's state would make reject() send nothing).
                    self._reset_response()
                self._failed = True
                return item  # type: ignore[no-any-return]
            self._take(size)
            if kind is BodyChunk:
                self._continue_pending = False
                if not self._skipping_body:
                    return item  # type: ignore[no-any-return]
            else:  # CLIENT_CLOSED: answer the current request, if any, then close
                self._keep_alive = False
                return item  # type: ignore[no-any-return]
        return NEED_DATA

    def _take(self, size: int) -> None:
        self._queue.popleft()
        self._queued_bytes -= size

    # ------------------------------------------------------------------ cycle

    def finish_cycle(self) -> Cycle:
        """Once a response has ended: decide whether the connection is kept."""
        if self._close_requested or self._failed or not self._keep_alive or not self._response_done:
            return Cycle.CLOSE
        self._current_open = False
        if self._current_body_done:
            return Cycle.KEEP_ALIVE
        if not self._continue_pending:
            self._skipping_body = True
            return Cycle.DRAIN
        return Cycle.CLOSE
