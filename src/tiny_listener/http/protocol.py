"""The server side of one HTTP/1.1 connection, sans-IO, on h11.

:class:`ServerConnection` is fed the bytes a client sent (``receive_data``), hands out what
they mean (``next_event``: a request head, body chunks, the end of a body, a protocol failure,
the client closing) and turns responses into bytes to send (``start_response``, ``send_body``,
``end_response``, ``reject``). It never touches a socket: the asyncio transport in
:mod:`tiny_listener.http.server` only moves bytes in and out, and tests drive this class
directly.

h11 parses requests; responses are framed here (``Content-Length``, chunked, or
close-delimited for HTTP/1.0), which costs a fraction of h11's ``send`` path, and a fresh h11
parser takes over the buffered bytes for each request cycle. On top of h11 this class enforces
the :class:`~tiny_listener.http.limits.Limits` (431, 413), refuses a request that carries both
``Content-Length`` and ``Transfer-Encoding`` (a request smuggling attempt: 400 and close),
answers HEAD without a body, checks response headers (no CR/LF injection) and body lengths,
and decides after each response whether the connection is kept (``finish_cycle``), skipping a
request body the handler did not read.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, List, NamedTuple, Sequence, Tuple, Union

from ..optional import require
from .fields import HEADER_NAME, HEADER_VALUE, header_problem, status_problem
from .limits import Limits

if TYPE_CHECKING:
    import h11
else:
    h11 = require("h11", extra="http")

RawHeaders = Sequence[Tuple[bytes, bytes]]
"""Header (name, value) pairs; names are lower-case in requests h11 parsed."""


class _Signal(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"
    BODY_END = "body end"
    CLIENT_CLOSED = "client closed"


NEED_DATA = _Signal.NEED_DATA
"""``next_event()``: every buffered byte is used; feed more with ``receive_data``."""
PAUSED = _Signal.PAUSED
"""``next_event()``: the current request is read; answer it before the next one is parsed."""
BODY_END = _Signal.BODY_END
"""``next_event()``: the current request body is complete."""
CLIENT_CLOSED = _Signal.CLIENT_CLOSED
"""``next_event()``: the client closed its side of the connection."""


class RequestHead(NamedTuple):
    """A request line and headers. ``target`` is the raw request target (path and query)."""

    method: str
    target: str
    http_version: str
    headers: RawHeaders
    expects_continue: bool


class BodyChunk(NamedTuple):
    """Some bytes of the current request body."""

    data: bytes


class ProtocolFailure(NamedTuple):
    """The client broke the protocol or a limit: answer ``reject(status_code)``, then close."""

    status_code: int
    reason: str


class Cycle(enum.Enum):
    """What ``finish_cycle()`` decided once a response was sent."""

    KEEP_ALIVE = "keep-alive"
    """Ready for the next request on this connection."""
    DRAIN = "drain"
    """The rest of the request body is skipped first, then the next request is read."""
    CLOSE = "close"
    """Close the connection."""


ConnectionEvent = Union[RequestHead, BodyChunk, ProtocolFailure, _Signal]

_REASONS = {
    100: b"Continue", 200: b"OK", 201: b"Created", 202: b"Accepted", 204: b"No Content",
    301: b"Moved Permanently", 302: b"Found", 303: b"See Other", 304: b"Not Modified",
    307: b"Temporary Redirect", 308: b"Permanent Redirect", 400: b"Bad Request", 401: b"Unauthorized",
    403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout",
    409: b"Conflict", 413: b"Content Too Large", 415: b"Unsupported Media Type", 422: b"Unprocessable Content",
    429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}


def reason_phrase(status_code: int) -> bytes:
    """Return the standard reason phrase of ``status_code`` (empty if unknown)."""
    return _REASONS.get(status_code, b"")


_TOKEN = HEADER_NAME
_FIELD_VALUE = HEADER_VALUE
_NO_BODY_STATUS = frozenset({204, 304})
_CHUNKED_END = b"0\r\n\r\n"
# The head of respond_text(), as start_response() frames it.
_TEXT_OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n"
_TEXT_OK_CLOSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
)

# Response framing (``ServerConnection._framing``).
_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NO_BODY = range(4)


class ResponseError(Exception):
    """A response breaks HTTP: a bad header, a second response, a body longer or shorter
    than its ``Content-Length``. The connection must be closed."""


class BaseServerConnection:
    """The sans-IO server connection API. Subclasses parse requests (``receive_data``,
    ``next_event``, ``finish_cycle``); this class frames responses and keeps what the current
    request says about them (HEAD, HTTP/1.0, keep-alive, a pending ``100 Continue``)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._close_requested = False
        self._failed = False
        self._reset_response()

    def _reset_response(self) -> None:
        self._head_request = False
        self._keep_alive = True
        self._http10 = False
        self._continue_pending = False
        self._response_started = False
        self._response_done = False
        self._framing = _NO_BODY
        self._remaining = 0

    def _fail(self, status_code: int, reason: str) -> ProtocolFailure:
        self._failed = True
        return ProtocolFailure(status_code, reason)

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the client; ``b""`` means the client closed its side."""
        raise NotImplementedError

    def next_event(self) -> ConnectionEvent:
        """Return the next thing the client said, or ``NEED_DATA`` / ``PAUSED``."""
        raise NotImplementedError

    def finish_cycle(self) -> Cycle:
        """Once a response has ended: decide whether the connection is kept."""
        raise NotImplementedError

    @property
    def buffered_bytes(self) -> int:
        """How many received bytes wait to be handed out."""
        raise NotImplementedError

    @property
    def has_partial_request(self) -> bool:
        """True when some bytes of a next request have arrived, but not its whole head."""
        raise NotImplementedError

    def request_close(self) -> None:
        """Close after the current response, and say so in it if it has not started."""
        self._close_requested = True

    @property
    def close_requested(self) -> bool:
        return self._close_requested

    @property
    def response_started(self) -> bool:
        return self._response_started

    @property
    def awaiting_continue(self) -> bool:
        """True while the client waits for ``100 Continue`` before sending its body."""
        return self._continue_pending and not self._response_started

    def send_continue(self) -> bytes:
        """Return ``100 Continue`` if the client waits for it before sending the body, else ``b""``."""
        if not self._continue_pending or self._response_started:
            return b""
        self._continue_pending = False
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def start_response(
        self, status_code: int, headers: List[Tuple[bytes, bytes]], body_length: int | None = None
    ) -> bytes:
        """Return the status line and headers, adding framing and ``Connection: close`` as needed.

        ``body_length`` gives ``Content-Length`` when the headers do not; without either the
        body is sent chunked (close-delimited to HTTP/1.0). Nothing counts as started until
        the head is valid: after a :class:`ResponseError` another response can still be sent.
        Raises :class:`ResponseError` if a response was already started, the status is not a
        final one (200-599), a header is invalid, or ``Content-Length`` is not ``body_length``.
        """
        if self._response_started:
            raise ResponseError("a response was already started for this request")
        if type(status_code) is not int or not 200 <= status_code <= 599:
            raise ResponseError(str(status_problem(status_code)))
        content_length = -1
        lines = [b"HTTP/1.1 %d %s\r\n" % (status_code, _REASONS.get(status_code, b""))]
        for name, value in headers:
            if _TOKEN.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
                raise ResponseError(str(header_problem(name, value)))
            lname = name.lower()
            if lname == b"content-length":
                length = int(value) if value.isdigit() else -1
                if length < 0 or (content_length >= 0 and length != content_length):
                    raise ResponseError(f"invalid response Content-Length: {value!r}")
                content_length = length
                continue
            if lname == b"transfer-encoding" or lname == b"connection":
                continue  # framing and persistence are decided here
            lines.append(b"%s: %s\r\n" % (name, value))
        if content_length < 0:
            if body_length is not None:
                content_length = body_length
        elif (
            body_length is not None
            and content_length != body_length
            and not self._head_request  # HEAD may announce the length a GET would get
            and status_code not in _NO_BODY_STATUS
        ):
            raise ResponseError(f"Content-Length {content_length} does not match the body of {body_length} bytes")
        # Headers are valid: from here on the response counts as started.
        self._response_started = True
        if status_code in _NO_BODY_STATUS:
            self._framing = _NO_BODY
        elif content_length >= 0:
            self._framing = _LENGTH
            self._remaining = content_length
            lines.append(b"content-length: %d\r\n" % content_length)
        elif self._http10:
            self._framing = _UNTIL_CLOSE
            self._keep_alive = False
        else:
            self._framing = _CHUNKED
            lines.append(b"transfer-encoding: chunked\r\n")
        if self._head_request:
            self._framing = _NO_BODY
        if self._close_requested or not self._keep_alive:
            self._keep_alive = False
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def send_body(self, data: bytes) -> bytes:
        """Return ``data`` framed for the wire; nothing for HEAD or a bodiless status.

        Raises :class:`ResponseError` past the declared ``Content-Length``.
        """
        framing = self._framing
        if not data or framing == _NO_BODY:
            return b""
        if framing == _LENGTH:
            self._remaining -= len(data)
            if self._remaining < 0:
                raise ResponseError("response body is longer than its Content-Length")
            return data
        if framing == _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def end_response(self) -> bytes:
        """Return the end of the response (the last chunk, if chunked).

        Raises :class:`ResponseError` if the body is shorter than its ``Content-Length``.
        """
        self._response_done = True
        if self._framing == _CHUNKED:
            return _CHUNKED_END
        if self._framing == _LENGTH and self._remaining:
            self._keep_alive = False
            raise ResponseError(f"response body is {self._remaining} bytes short of its Content-Length")
        if self._framing == _UNTIL_CLOSE:
            self._keep_alive = False
        return b""

    def respond(self, status_code: int, headers: List[Tuple[bytes, bytes]], body: bytes) -> bytes:
        """Return a whole response: head, body (none for HEAD) and end."""
        return self.start_response(status_code, headers, len(body)) + self.send_body(body) + self.end_response()

    def respond_text(self, body: bytes) -> bytes:
        """Return ``200 OK`` with ``body`` as ``text/plain; charset=utf-8``: :meth:`respond`
        with the same bytes, made from a head prepared in advance. Raises
        :class:`ResponseError` if a response was already started."""
        if self._response_started:
            raise ResponseError("a response was already started for this request")
        self._response_started = True
        self._response_done = True
        self._framing = _LENGTH
        self._remaining = 0
        if self._close_requested or not self._keep_alive:
            self._keep_alive = False
            head = _TEXT_OK_CLOSE % len(body)
        else:
            head = _TEXT_OK % len(body)
        return head if self._head_request else head + body

    def reject(self, status_code: int, message: str = "") -> bytes:
        """Return a short error response that closes the connection, or ``b""`` if a response
        has already started (the connection can then only be closed)."""
        if self._response_started:
            return b""
        body = (message or reason_phrase(status_code).decode()).encode()
        headers: List[Tuple[bytes, bytes]] = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        self._close_requested = True
        return self.respond(status_code, headers, body)


class ServerConnection(BaseServerConnection):
    """One HTTP/1.1 connection seen from the server, parsed by h11; see the module docstring."""

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self._received_since_head = 0
        self._new_cycle(b"", False)

    def _new_cycle(self, buffered: bytes, client_closed: bool) -> None:
        # h11's own limit covers an incomplete head; a complete one is measured in next_event.
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        # False while this h11 connection has been given nothing: it is then idle with an
        # empty buffer, which answers buffered_bytes and next_event without asking h11 (whose
        # trailing_data copies the buffer, and whose next_event runs its reader).
        self._fed = bool(buffered) or client_closed
        self._cycle_bytes = len(buffered)  # bytes given to this h11 connection
        if buffered:
            self._h11.receive_data(buffered)
        if client_closed:
            self._h11.receive_data(b"")
        self._body_size = 0
        self._skipping_body = False
        self._reset_response()

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the client; ``b""`` means the client closed its side."""
        self._received_since_head += len(data)
        self._cycle_bytes += len(data)
        self._fed = True
        self._h11.receive_data(data)

    @property
    def buffered_bytes(self) -> int:
        """How many received bytes are not parsed yet."""
        return len(self._h11.trailing_data[0]) if self._fed else 0

    @property
    def has_partial_request(self) -> bool:
        """True when some bytes of a next request have arrived, but not its whole head."""
        return self.buffered_bytes > 0

    def next_event(self) -> ConnectionEvent:
        """Return the next thing the client said, or ``NEED_DATA`` / ``PAUSED``.

        A :class:`ProtocolFailure` is final: answer it with :meth:`reject` and close.
        """
        if not self._fed:
            return NEED_DATA
        while True:
            conn = self._h11
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._fail(exc.error_status_hint, str(exc))
            kind = type(event)
            if kind is h11.Data:
                self._body_size += len(event.data)  # type: ignore[union-attr]
                self._continue_pending = False
                if self._body_size > self.limits.max_body_bytes:
                    return self._fail(413, f"request body is over {self.limits.max_body_bytes} bytes")
                if self._skipping_body:
                    continue
                return BodyChunk(event.data)  # type: ignore[union-attr]
            if kind is h11.Request:
                return self._request_head(event)  # type: ignore[arg-type]
            if kind is h11.EndOfMessage:
                if self._skipping_body:
                    self._next_cycle()
                    continue
                return BODY_END
            if event is h11.NEED_DATA:
                return NEED_DATA
            if event is h11.PAUSED:
                return PAUSED
            # h11.ConnectionClosed: the only event left for a server.
            return CLIENT_CLOSED

    def _request_head(self, request: h11.Request) -> ConnectionEvent:
        headers = request.headers
        target = request.target
        if self._received_since_head > self.limits.max_header_bytes:
            # Bytes of later pipelined requests may be counted: measure this head exactly.
            size = len(target) + sum(len(name) + len(value) + 4 for name, value in headers)
            if size > self.limits.max_header_bytes:
                return self._fail(431, f"request headers are over {self.limits.max_header_bytes} bytes")
        # What follows this head in h11's buffer is at most what this h11 connection was
        # given: a bound (a larger one only means measuring the next head exactly) that costs
        # no copy of the buffer, as buffered_bytes (trailing_data) does.
        self._received_since_head = self._cycle_bytes
        content_length = None
        chunked = False
        keep_alive = request.http_version == b"1.1"
        for name, value in headers:
            if name == b"content-length":
                content_length = int(value)  # h11 checked it is a number
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                keep_alive = False
        if chunked and content_length is not None:
            # RFC 9112 6.1: a request smuggling attempt; h11 would trust Transfer-Encoding.
            return self._fail(400, "request has both Content-Length and Transfer-Encoding")
        if content_length is not None and content_length > self.limits.max_body_bytes:
            return self._fail(413, f"request body is over {self.limits.max_body_bytes} bytes")
        method = request.method
        self._head_request = method == b"HEAD"
        self._keep_alive = keep_alive
        self._http10 = request.http_version != b"1.1"
        expects_continue = self._h11.client_is_waiting_for_100_continue
        self._continue_pending = expects_continue
        return RequestHead(
            method.decode("ascii"),
            target.decode("ascii"),
            request.http_version.decode("ascii"),
            headers,
            expects_continue,
        )

    def finish_cycle(self) -> Cycle:
        """Once a response has ended: decide whether the connection is kept, and if it is,
        get ready to parse the next request."""
        if self._close_requested or self._failed or not self._keep_alive or not self._response_done:
            return Cycle.CLOSE
        their_state: Any = self._h11.their_state
        if their_state is h11.DONE:
            self._next_cycle()
            return Cycle.KEEP_ALIVE
        if their_state is h11.SEND_BODY and not self._continue_pending:
            self._skipping_body = True
            return Cycle.DRAIN
        # The client waits for "100 Continue" that will never come: it may or may not send the
        # body, so the connection cannot be reused safely.
        return Cycle.CLOSE

    def _next_cycle(self) -> None:
        buffered, client_closed = self._h11.trailing_data
        self._new_cycle(buffered, client_closed)
