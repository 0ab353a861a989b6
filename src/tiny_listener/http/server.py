"""The asyncio side of the HTTP listener: one :class:`HTTPConnection` per socket.

It only moves bytes between the transport and the sans-IO
:class:`~tiny_listener.http.protocol.ServerConnection`, starts one event per request, and
applies flow control and timeouts:

- reading stops while a handler has not taken ``limits.max_body_buffer`` bytes of body, or
  while pipelined requests pile up behind the one being answered;
- writing a streamed response waits while the socket's send buffer is full (``drain``);
- an idle keep-alive connection is closed after ``limits.keep_alive_timeout``; a request
  head not complete ``limits.header_timeout`` after its first byte gets ``408`` and a close;
  so does a request body that breaks ``limits.body_timeout`` or ``limits.min_body_rate`` (a
  :class:`~tiny_listener.http.limits.BodyClock`, run only while the body is awaited).

Requests on one connection are answered one at a time, in order: h11 parses the next
pipelined request only once the current response has ended.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import TYPE_CHECKING, Any, Iterable, List, Tuple
from urllib.parse import unquote

from ..errors import EventNotFound, ValidationError
from .limits import BodyClock
from .protocol import (
    BODY_END,
    NEED_DATA,
    PAUSED,
    BodyChunk,
    Cycle,
    ProtocolFailure,
    RequestHead,
    ResponseError,
)
from .responses import StreamingResponse, validation_error_body

if TYPE_CHECKING:
    from .context import HTTPContext
    from .source import HTTPSource

logger = logging.getLogger("tiny_listener.http")
access_logger = logging.getLogger("tiny_listener.http.access")

# Seconds a connection closed after an error answer keeps reading (and dropping) what the
# client still sends, so that the client gets to read the answer (see _close_lingering).
LINGER_SECONDS = 2.0

# Response progress of a context (``HTTPContext._response_state``).
NOT_STARTED, STARTED, SENT = 0, 1, 2

# What the connection's deadline (``HTTPConnection._deadline``) is about.
_NO_DEADLINE, _IDLE, _HEAD = 0, 1, 2


class ResponseAlreadyStarted(RuntimeError):
    """A response was sent for a request that already has one."""


class HTTPConnection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, source: HTTPSource) -> None:
        self.source = source
        self.limits = source.limits
        self.conn = source._new_protocol()
        self.transport: asyncio.Transport | None = None
        self.client: Tuple[str, int] | None = None
        # The request being read or answered; the next one waits in h11's buffer.
        self.current: HTTPContext | None = None
        # The task of the current request's event, and the callback told when it ends (one
        # bound method for the connection's life, not one per request).
        self._task: asyncio.Task[Any] | None = None
        self._event_done_callback = self._event_done
        self._loop = asyncio.get_running_loop()
        # One timer for the keep-alive and request-head deadlines: a request only clears the
        # deadline, an idle spell sets it, and the timer, armed for an earlier time, re-arms
        # itself for the deadline it finds (not a timer made and cancelled per request).
        self._deadline_kind = _NO_DEADLINE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._linger_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._write_paused = False
        # The current request's body: not all received yet; timed once the server waits for it.
        self._body_pending = False
        self._body_clock: BodyClock | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._processing = False
        self._lingering = False
        self._client_done = False  # the client closed its sending side
        self.closed = False
        # The context transport callbacks run in; see _response_complete.
        self._context = contextvars.copy_context()

    # ------------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        self.source._connections.add(self)
        if self.source.closing:
            self._close()
            return
        self._arm_timer(header=False)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # answered and closing: what the client still sends is dropped
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self._client_done = True
        if self._lingering:
            return False
        self.conn.receive_data(b"")
        self._process()
        # Keep our half open while a request is answered: a client may shut down its sending
        # side right after the request and still read the response.
        return self.current is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.source._connections.discard(self)
        self._cancel_timer()
        self._stop_body_clock()
        if self.current is not None:
            self.current._abort_body("the client disconnected")
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Return once the socket accepts more data (or is closed)."""
        while self._write_paused and not self.closed:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # ------------------------------------------------------------------ reading requests

    def _process(self) -> None:
        """Act on everything the client sent that can be acted on now."""
        if self._processing or self.closed:
            return
        self._processing = True
        try:
            conn = self.conn
            while True:
                event = conn.next_event()
                kind = type(event)
                if kind is RequestHead:
                    self._start_request(event)  # type: ignore[arg-type]
                elif event is BODY_END:
                    if self.current is not None:
                        self.current._finish_body()
                    self._body_pending = False
                    if self._body_clock is not None:
                        self._stop_body_clock()
                elif event is NEED_DATA:
                    if self.current is None:
                        self._arm_timer(header=conn.has_partial_request)
                    elif self._body_pending:
                        self._time_body()
                    return
                elif kind is BodyChunk:
                    self._receive_body(event.data)  # type: ignore[union-attr]
                elif event is PAUSED:
                    # Pipelined requests wait for the current response; don't buffer unboundedly.
                    if conn.buffered_bytes > self.limits.max_body_buffer:
                        self._pause_reading()
                    return
                elif kind is ProtocolFailure:
                    self._fail(event)  # type: ignore[arg-type]
                    return
                else:  # the client closed its side
                    if self.current is None:
                        self._close()
                    else:
                        self.current._abort_body("the client closed the connection mid-request")
                    return
        finally:
            self._processing = False

    def _start_request(self, head: RequestHead) -> None:
        self._deadline_kind = _NO_DEADLINE
        path, _, query_string = head.target.partition("?")
        if "%" in path:
            path = unquote(path)
        source = self.source
        ctx = source.new_ctx()
        ctx._bind(self, head, path, query_string)
        self.current = ctx
        self._body_pending = True  # until BODY_END, which may come at once
        if source.closing:
            self.conn.request_close()
        if source._endpoints:
            answer = source.builtin_answer(ctx)
            if answer is not None:
                ctx.drop()
                self.send_response(ctx, *answer)
                return
        try:
            task = source._dispatch_request(ctx)
        except EventNotFound:
            ctx.drop()
            status, headers, body = source._no_route_response(ctx)
            self.send_response(ctx, status, headers, body)
            return
        self._task = task
        task.add_done_callback(self._event_done_callback)

    def _receive_body(self, data: bytes) -> None:
        ctx = self.current
        if ctx is None:
            return
        channel = ctx._feed_body(data)
        clock = self._body_clock
        if clock is not None:
            clock.progress(len(data), self._loop.time())
        if channel.buffered > self.limits.max_body_buffer:
            self._pause_reading()
        elif clock is not None and not clock.running:
            self._time_body()  # the client sent its body without waiting for 100 Continue

    def body_wanted(self) -> None:
        """The handler waits for body bytes: send ``100 Continue`` if the client expects it."""
        if not self.closed and self.transport is not None:
            data = self.conn.send_continue()
            if data:
                self.transport.write(data)
                if self._body_clock is not None:
                    self._time_body()  # from now on the client is expected to send it

    def body_drained(self) -> None:
        """The handler took body bytes: read the socket again once there is room."""
        ctx = self.current
        if self._reading_paused and (ctx is None or ctx.buffered_body_bytes <= self.limits.max_body_buffer // 2):
            self._resume_reading()

    def _fail(self, failure: ProtocolFailure) -> None:
        self._stop_body_clock()
        ctx = self.current
        logger.info("%s: %s (answered %d)", self._peer(), failure.reason, failure.status_code)
        data = self.conn.reject(failure.status_code, failure.reason)
        if ctx is not None:
            ctx._abort_body(failure.reason)
            if ctx._response_state == NOT_STARTED:
                ctx._response_state = SENT
                ctx.status_code = failure.status_code
                self._log_access(ctx, failure.status_code)
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
        self.current = None
        self._close_lingering()

    # ------------------------------------------------------------------ writing responses

    def send_response(
        self, ctx: HTTPContext, status_code: int, headers: List[Tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Send a whole response to ``ctx``'s request; raises :class:`ResponseAlreadyStarted`."""
        if ctx._response_state != NOT_STARTED:
            raise ResponseAlreadyStarted(f"{ctx.method} {ctx.target} already has a response")
        ctx._response_state = STARTED
        ctx.status_code = status_code
        if self.closed or ctx is not self.current:
            ctx._response_state = SENT
            return
        try:
            data = self.conn.respond(status_code, headers, body)
        except ResponseError:
            if not self.conn.response_started:
                ctx._response_state = NOT_STARTED  # nothing was sent: a 500 still can be
            raise
        ctx._response_state = SENT
        self.transport.write(data)  # type: ignore[union-attr]
        self._response_complete(ctx)

    def send_text(self, ctx: HTTPContext, body: bytes) -> None:
        """Send ``200 OK`` with ``body`` as UTF-8 text: :meth:`send_response` for the most
        common answer, with headers made in advance. Raises :class:`ResponseAlreadyStarted`."""
        if ctx._response_state != NOT_STARTED:
            raise ResponseAlreadyStarted(f"{ctx.method} {ctx.target} already has a response")
        ctx._response_state = SENT
        ctx.status_code = 200
        if self.closed or ctx is not self.current:
            return
        self.transport.write(self.conn.respond_text(body))  # type: ignore[union-attr]
        self._response_complete(ctx)

    async def stream_response(self, ctx: HTTPContext, response: StreamingResponse) -> None:
        """Send ``response``, chunk by chunk, waiting while the client reads slowly.

        Stops early (closing the iterator) if the client disconnects; raises
        :class:`ResponseAlreadyStarted`, or what the iterator raises.
        """
        if ctx._response_state != NOT_STARTED:
            raise ResponseAlreadyStarted(f"{ctx.method} {ctx.target} already has a response")
        ctx._response_state = STARTED
        ctx.status_code = response.status_code
        content: Any = response.content
        try:
            if self.closed or ctx is not self.current:
                return
            transport: Any = self.transport
            conn = self.conn
            transport.write(conn.start_response(response.status_code, response.head_items()))
            if ctx.method != "HEAD":
                if hasattr(content, "__aiter__"):
                    async for chunk in content:
                        if not self._write_chunk(chunk):
                            return
                        if self._write_paused:
                            await self.drain()
                else:
                    for chunk in content:
                        if not self._write_chunk(chunk):
                            return
                        if self._write_paused:
                            await self.drain()
            if self.closed:
                return
            transport.write(conn.end_response())
            ctx._response_state = SENT
            self._response_complete(ctx)
        finally:
            ctx._response_state = SENT
            # A generator cut short (client gone, error) runs its cleanup now, not at GC time.
            aclose = getattr(content, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                close = getattr(content, "close", None)
                if close is not None:
                    close()

    def _write_chunk(self, chunk: Any) -> bool:
        if self.closed:
            return False
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        self.transport.write(self.conn.send_body(data))  # type: ignore[union-attr]
        return True

    def _event_done(self, task: asyncio.Task[Any]) -> None:
        ctx = self.current
        if ctx is not None and task is self._task and not self.closed:
            self.handler_done(ctx, task)
        # Else answered (or abandoned): the usual case, decided without asking the task.

    def handler_done(self, ctx: HTTPContext, task: asyncio.Task[Any]) -> None:
        """The request's event ended: answer 500 (or close) if it ended without a response."""
        if ctx is not self.current or self.closed:
            return  # answered (or abandoned): the usual case, decided without asking the task
        if task.cancelled():
            failed = True
        else:
            failed = task.exception() is not None or ctx._response_state != SENT
        if not failed:
            return
        if ctx._response_state == NOT_STARTED:
            content_type = b"text/plain; charset=utf-8"
            error = None if task.cancelled() else task.exception()
            if task.cancelled():
                # Cancelled at shutdown, past its deadline: say so, and take no more requests.
                self.conn.request_close()
                status, body = 503, b"Service Unavailable"
            elif isinstance(error, ValidationError):
                # The request's data does not fit the handler's types: the client's to fix.
                status, body, content_type = 422, validation_error_body(error), b"application/json"
            else:
                status, body = 500, b"Internal Server Error"
            headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
            self.send_response(ctx, status, headers, body)
        else:
            # Half a response is on the wire: only closing tells the client it is broken.
            self.current = None
            self._close()

    def _response_complete(self, ctx: HTTPContext) -> None:
        if access_logger.isEnabledFor(logging.INFO):
            self._log_access(ctx, ctx.status_code or 0)
        self.current = None
        self._body_pending = False  # what is left of it is skipped (keep-alive timeout) or not read
        if self._body_clock is not None:
            self._stop_body_clock()
        cycle = self.conn.finish_cycle()
        if cycle is Cycle.CLOSE:
            self._close()
            return
        if self._reading_paused:
            self._resume_reading()
        if self.conn.buffered_bytes:
            # A pipelined request waits. This runs in the task of the request just answered:
            # start the next one from the connection's own context, so that it inherits no
            # context variable (a trace id...) from its predecessor.
            self._loop.call_soon(self._process, context=self._context)
        else:
            self._process()

    def _log_access(self, ctx: HTTPContext, status_code: int) -> None:
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                '%s - "%s %s HTTP/%s" %d', self._peer(), ctx.method, ctx.target, ctx.http_version, status_code
            )

    def _peer(self) -> str:
        return "-" if self.client is None else f"{self.client[0]}:{self.client[1]}"

    # ------------------------------------------------------------------ timers, pausing, closing

    def _arm_timer(self, header: bool) -> None:
        kind = self._deadline_kind
        if kind == _HEAD or (kind == _IDLE and not header):
            return  # a running header deadline is never extended, nor an idle one restarted
        if header:
            self._deadline_kind = _HEAD
            deadline = self._deadline = self._loop.time() + self.limits.header_timeout
        else:
            self._deadline_kind = _IDLE
            deadline = self._deadline = self._loop.time() + self.limits.keep_alive_timeout
        timer = self._timer
        if timer is not None:
            if self._timer_when <= deadline:
                return  # it fires first, then waits for the rest
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timeout)
        self._timer_when = deadline

    def _cancel_timer(self) -> None:
        self._deadline_kind = _NO_DEADLINE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._deadline_kind == _NO_DEADLINE or self.current is not None or self.closed:
            return  # armed again when the connection is next idle
        if self._deadline > self._timer_when:
            # Requests came and went since it was armed: wait for the current deadline.
            self._timer = self._loop.call_at(self._deadline, self._on_timeout)
            self._timer_when = self._deadline
            return
        if self._deadline_kind == _HEAD:
            timeout = self.limits.header_timeout
            logger.info("%s: request head not complete in %.1fs (answered 408)", self._peer(), timeout)
            data = self.conn.reject(408)
            if data:
                self.transport.write(data)  # type: ignore[union-attr]
            self._close_lingering()
            return
        self._close()

    # ------------------------------------------------------------------ the request body's clock

    def _time_body(self) -> None:
        """Run the body clock while the body is awaited (not while reading is paused or the
        client waits for ``100 Continue``), and check it when it could expire."""
        now = self._loop.time()
        running = not self._reading_paused and not self.conn.awaiting_continue
        clock = self._body_clock
        if clock is None:
            clock = self._body_clock = BodyClock(self.limits, now, running)
        elif running:
            clock.resume(now)
        else:
            clock.pause(now)
        if self._body_timer is None:
            when = clock.next_check(now)
            if when is not None:
                self._body_timer = self._loop.call_at(when, self._check_body)

    def _check_body(self) -> None:
        self._body_timer = None
        clock = self._body_clock
        if clock is None or self.closed or self.current is None:
            return
        now = self._loop.time()
        reason = clock.expired(now)
        if reason is not None:
            self._fail(ProtocolFailure(408, reason))
            return
        when = clock.next_check(now)  # progress moved the deadline on; None while paused
        if when is not None:
            self._body_timer = self._loop.call_at(when, self._check_body)

    def _stop_body_clock(self) -> None:
        self._body_pending = False
        self._body_clock = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self.closed and self.transport is not None:
            if self._body_clock is not None:
                self._body_clock.pause(self._loop.time())  # the handler is slow, not the client
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self.closed and self.transport is not None:
            self._reading_paused = False
            if self._body_clock is not None:
                self._time_body()
            self.transport.resume_reading()

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else once the current response is sent."""
        self.conn.request_close()
        if self.current is None:
            self._close()

    def abandon(self) -> None:
        """Shutdown gave up on the current request's handler (cancelled, it may not even end):
        answer 503 now if nothing was sent, and close. What the handler does later is dropped."""
        ctx = self.current
        if ctx is not None and not self.closed and self.transport is not None and ctx._response_state == NOT_STARTED:
            logger.info(
                "%s: %s %s still running at the shutdown deadline (answered 503)", self._peer(), ctx.method, ctx.target
            )
            ctx._response_state = SENT
            ctx.status_code = 503
            self.transport.write(self.conn.reject(503))
            self._log_access(ctx, 503)
        self.current = None
        self._close()

    def _close_lingering(self) -> None:
        """Close after an error answer to a client that may still be sending (a body over
        the limit, a trickle cut off): closing with its bytes unread would reset the
        connection, and a reset can destroy the answer before the client reads it. So end our
        side, read and drop what comes for up to ``LINGER_SECONDS``, then close."""
        transport = self.transport
        if self._client_done or transport is None or transport.is_closing() or not transport.can_write_eof():
            self._close()  # nothing more will come
            return
        self._lingering = True
        self._cancel_timer()
        try:
            transport.write_eof()
        except OSError:  # the client reset the connection meanwhile
            self._close()
            return
        self._resume_reading()
        self._linger_timer = self._loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def abandon_when_cancelled(connections: Iterable[HTTPConnection]) -> None:
    """Wait until cancelled, which shutdown does together with the events still running at its
    deadline; then answer every request still without a response (see ``abandon``) without
    waiting for its handler: one that swallows its cancellation must not leave its client
    with a bare close."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        for connection in list(connections):
            connection.abandon()
