"""One TCP connection: bytes in, frames queued, one event per frame, replies out.

The protocol object only moves bytes (the framer parses them) and keeps the connection's
state; a worker task, spawned with ``drain=True`` so that shutdown waits for it, runs the
frames' events in order. A Protocol rather than ``asyncio.StreamReader``: a stream cannot be
told to stop reading while keeping the frames it already buffered (``feed_eof`` followed by a
flow-control resume trips "feed_data after feed_eof"), and graceful shutdown needs exactly that.

Flow control, both ways, so that what one client costs is bounded whatever its handlers do:

- the socket is not read while ``MAX_QUEUED_FRAMES`` frames or ``MAX_QUEUED_BYTES`` bytes of
  frames wait for their event (resumed at half); a large read is cut into frames
  ``FEED_SLICE`` bytes at a time, only while there is room, so that a flood of tiny frames
  costs its raw bytes, not an object per frame;
- while the replies the client has not read are over the transport's high-water mark (64 KiB,
  asyncio's default), the socket is not read and no further frame is handled: a client that
  sends requests and never reads the answers stops being read, instead of growing the server;
- replies sent without waiting (``ctx.send``, from any handler, a broadcast for instance) that
  pile up past ``max_write_buffer`` close the connection, with a warning;
- once the client is gone, the frames it sent that were not handled yet are dropped (one log
  line), not run.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any, Deque, Iterable, List, Set

from ..codecs import DecodeError
from ..errors import EventNotFound
from ..tasks import retrieve_exception
from .framing import Framer

if TYPE_CHECKING:
    from .context import TCPContext
    from .source import TCPSource

logger = logging.getLogger("tiny_listener.tcp")

# Reading pauses once this many frames, or this many bytes of frames, wait for their event,
# and resumes at half of both.
MAX_QUEUED_FRAMES = 256
MAX_QUEUED_BYTES = 64 * 1024
# Received bytes are framed at most this many at a time while frames queue up (see _feed_unframed).
FEED_SLICE = 16 * 1024
# The most one read from a socket takes. The transport reads into one buffer shared by every
# connection (a read is copied out before the next one), instead of allocating 256 KiB a read.
READ_SIZE = 64 * 1024
_read_buffer = bytearray(READ_SIZE)
_read_view = memoryview(_read_buffer)


def format_address(address: Any) -> str:
    """Return ``host:port`` for an IPv4 address tuple, ``[host]:port`` for IPv6."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class Connection(asyncio.BufferedProtocol):
    """A client connection of a :class:`~tiny_listener.tcp.TCPListener`; its context is
    ``ctx`` (cid ``host:port``), made when the connection opens and dropped when it ends."""

    def __init__(self, source: TCPSource, framer: Framer) -> None:
        self.source = source
        self.framer = framer
        self.ctx: TCPContext | None = None
        self.peer = ""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._frames: Deque[bytes] = collections.deque()
        self._queued_bytes = 0
        # Bytes received but not framed yet: what a large read brought past a full queue.
        self._unframed: Deque[memoryview] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._in_flight: Set[asyncio.Task[Any]] = set()
        # Reading is paused while any of the three next flags is set (see _sync_reading).
        self._queue_full = False
        self._stop_reading = False  # no more frames will be read: EOF, shutdown, idle, error
        self._write_paused = False  # the client's unread replies are over the high-water mark
        self._reading_paused = False
        self._lost = False
        self._drain_waiters: Deque[asyncio.Future[None]] = collections.deque()
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._worker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.peer = format_address(transport.get_extra_info("peername"))
        source = self.source
        refusal = source._admit(self)
        if refusal is not None:
            logger.warning("refusing connection from %s: %s", self.peer, refusal)
            self._lost = self._stop_reading = True
            transport.abort()
            return
        self.ctx = source._new_connection_ctx(self)
        self._worker = source.spawn(self._work(), drain=True, name=f"tcp connection {self.ctx.cid}")
        if source.idle_timeout is not None:
            self._idle_timer = self._loop.call_at(self._last_activity + source.idle_timeout, self._check_idle)
        logger.debug("connection from %s", self.peer)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_view

    def buffer_updated(self, nbytes: int) -> None:
        if self._stop_reading:
            return  # reading is paused; this is what the transport had already read
        data = bytes(_read_view[:nbytes])  # copied out before the next read reuses the buffer
        self._last_activity = self._loop.time()
        if nbytes > FEED_SLICE or self._unframed:
            self._unframed.append(memoryview(data))
            self._feed_unframed()
            return
        frames = self.framer.feed(data)
        if frames:  # _queue_frames(frames), inlined: this runs for every read
            queue = self._frames
            queue.extend(frames)
            self._queued_bytes += sum(map(len, frames))
            if not self._queue_full and (len(queue) >= MAX_QUEUED_FRAMES or self._queued_bytes >= MAX_QUEUED_BYTES):
                self._queue_full = True
                self._sync_reading()
            self._wake()
        if self.framer.error is not None:
            logger.warning("closing connection %s: %s", self.peer, self.framer.error)
            self.stop_reading()

    def _queue_frames(self, frames: List[bytes]) -> None:
        if frames:
            queue = self._frames
            queue.extend(frames)
            self._queued_bytes += sum(map(len, frames))
            if not self._queue_full and (len(queue) >= MAX_QUEUED_FRAMES or self._queued_bytes >= MAX_QUEUED_BYTES):
                self._queue_full = True
                self._sync_reading()
            self._wake()

    def _feed_unframed(self) -> None:
        """Frame received bytes ``FEED_SLICE`` at a time while the queue has room; what is
        left waits as raw bytes (reading is paused meanwhile)."""
        unframed = self._unframed
        framer = self.framer
        while unframed and not self._queue_full and framer.error is None:
            chunk = unframed[0]
            if len(chunk) > FEED_SLICE:
                piece = bytes(chunk[:FEED_SLICE])
                unframed[0] = chunk[FEED_SLICE:]
            else:
                piece = bytes(unframed.popleft())
            self._queue_frames(framer.feed(piece))
        if framer.error is not None and not self._stop_reading:
            unframed.clear()
            logger.warning("closing connection %s: %s", self.peer, framer.error)
            self.stop_reading()

    def eof_received(self) -> bool:
        # Keep the write side open: the frames already read still get their replies.
        self.stop_reading()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._stop_reading = True
        if exc is not None:
            logger.debug("connection %s lost: %r", self.peer, exc)
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionResetError(f"connection {self.peer} closed"))
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._sync_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._last_activity = self._loop.time()  # the client read its replies: it is alive
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._sync_reading()
        self._wake()

    def _sync_reading(self) -> None:
        """Pause or resume reading the socket to match the flags (see the module doc)."""
        pause = self._stop_reading or self._write_paused or self._queue_full
        transport = self._transport
        if pause is not self._reading_paused and transport is not None and not transport.is_closing():
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # ------------------------------------------------------------------ used by the context

    def send(self, payload: bytes) -> None:
        """Frame ``payload`` and queue it for sending; dropped with a debug log line if the
        connection is already closed (the client is gone, nobody can receive it).

        Past ``max_write_buffer`` bytes of replies the client has not read, the connection is
        closed (a warning says so) and what was not sent is dropped.
        """
        frame = self.framer.encode(payload)
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            logger.debug("not sending %d bytes to %s: the connection is closed", len(payload), self.peer)
            return
        transport.write(frame)
        if self._write_paused:  # only then can the buffer be anywhere near the limit
            unread = transport.get_write_buffer_size()
            limit = self.source.max_write_buffer
            if unread > limit:
                logger.warning(
                    "closing connection %s: %d bytes of replies it does not read (max_write_buffer=%d)",
                    self.peer,
                    unread,
                    limit,
                )
                self._stop_reading = True
                transport.abort()

    async def drain(self) -> None:
        """Return once the send buffer is below its high-water mark.

        Raises ``ConnectionResetError`` if the connection closed meanwhile.
        """
        if self._lost:
            raise ConnectionResetError(f"connection {self.peer} closed")
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def stop_reading(self) -> None:
        """Read no more frames; the queued ones still run, then the connection closes."""
        if self._stop_reading:
            return
        self._stop_reading = True
        self._sync_reading()
        self._wake()

    def abandon(self) -> None:
        """Shutdown gave up on this connection's frames (their handlers, cancelled, may not even
        end): close it now, sending the replies already written."""
        if not self._lost and self._transport is not None and not self._transport.is_closing():
            logger.info("closing connection %s: its frames were still handled at the shutdown deadline", self.peer)
        self._close()

    @property
    def in_flight(self) -> int:
        """Frames received and not yet handled (queued or running; received bytes not cut
        into frames yet count as one)."""
        return len(self._frames) + len(self._in_flight) + (1 if self._unframed else 0)

    # ------------------------------------------------------------------ worker

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep_until_woken(self) -> None:
        self._wakeup = self._loop.create_future()
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    async def _work(self) -> None:
        frames = self._frames
        max_in_flight = self.source.max_in_flight
        try:
            while True:
                if self._lost:
                    if frames or self._unframed:
                        unframed = sum(map(len, self._unframed))
                        logger.info(
                            "connection %s closed: %d received frame(s) dropped%s",
                            self.peer,
                            len(frames),
                            f" (and {unframed} bytes not cut into frames)" if unframed else "",
                        )
                        frames.clear()
                        self._unframed.clear()
                        self._queued_bytes = 0
                    break
                if not frames:
                    if self._unframed:
                        self._feed_unframed()
                        continue
                    if self._stop_reading:
                        break
                    waiter = self._wakeup = self._loop.create_future()
                    await waiter
                    self._wakeup = None
                    continue
                if self._write_paused:
                    # The client does not read its replies: handle nothing more until it does.
                    await self._sleep_until_woken()
                    continue
                frame = frames.popleft()
                self._queued_bytes -= len(frame)
                if (
                    self._queue_full
                    and len(frames) <= MAX_QUEUED_FRAMES // 2
                    and self._queued_bytes <= MAX_QUEUED_BYTES // 2
                ):
                    self._queue_full = False
                    self._feed_unframed()
                    self._sync_reading()
                task = self._dispatch(frame)
                if task is None:
                    continue
                if max_in_flight == 1:
                    try:
                        await task
                    except Exception:  # noqa: S110 - the core logged it; the connection goes on
                        pass
                else:
                    self._in_flight.add(task)
                    task.add_done_callback(self._event_done)
                    if len(self._in_flight) >= max_in_flight:
                        await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            if self._in_flight:
                await asyncio.wait(self._in_flight)
        finally:
            self._close()

    def _dispatch(self, frame: bytes) -> asyncio.Task[Any] | None:
        source = self.source
        ctx = self.ctx
        assert ctx is not None
        try:
            path = source.event_path(frame)
            data = source.frame_data(frame)
        except DecodeError as exc:
            logger.warning("cannot decode frame %r from %s (%s); skipped", frame[:200], self.peer, exc)
            return None
        except Exception:
            logger.exception("cannot read frame %r from %s; skipped", frame[:200], self.peer)
            return None
        try:
            return ctx.trigger_event(path, data=data)
        except EventNotFound:
            logger.warning("no route matches frame %r from %s; skipped", path[:200], self.peer)
            return None

    def _event_done(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        retrieve_exception(task)  # the core already logged a handler's failure; the connection goes on

    def _check_idle(self) -> None:
        timeout = self.source.idle_timeout
        if timeout is None or self._lost:
            return
        now = self._loop.time()
        deadline = self._last_activity + timeout
        if now >= deadline:
            if self._write_paused:
                # It neither sends nor reads: closing would wait for it to read; drop the replies.
                logger.info("closing connection %s: it read none of its replies for %.1fs", self.peer, timeout)
                self._stop_reading = True
                self._transport.abort()  # type: ignore[union-attr]
                return
            if not self.in_flight and not self._stop_reading:
                logger.info("closing connection %s: idle for %.1fs", self.peer, timeout)
                self.stop_reading()
                return
        # Busy handling frames counts as activity: look again a full timeout later.
        self._idle_timer = self._loop.call_at(deadline if now < deadline else now + timeout, self._check_idle)

    def _close(self) -> None:
        # The context goes with the close: it and this connection hold each other (its scope),
        # and the transport holds this connection until it has called connection_lost(), so
        # the context's history (the frames' paths) would outlive the close by a loop step or
        # more. No context left: closed already (shutdown abandoned it before its worker ended).
        ctx, self.ctx = self.ctx, None
        if ctx is None:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()  # sends what is buffered, then closes
        ctx.drop()
        self.source._forget(self)
        logger.debug("connection %s closed", self.peer)



async def abandon_when_cancelled(connections: Iterable[Connection]) -> None:
    """Wait until cancelled, which shutdown does together with the events still running at its
    deadline; then close every connection still open (see ``Connection.abandon``) without
    waiting for handlers that may swallow their cancellation."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        for connection in list(connections):
            connection.abandon()
