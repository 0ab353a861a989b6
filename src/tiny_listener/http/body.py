"""The body of one request, as it arrives: buffered for the handler, with back-pressure."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Deque


class RequestAborted(Exception):
    """The request body cannot be read to its end: the client disconnected, or sent a body
    that is malformed or over the limit (the server has already answered it)."""


class BodyChannel:
    """Chunks of a request body between the connection (``feed``, ``finish``, ``abort``)
    and the handler (``read``).

    ``on_read_start`` is called once, when the handler first waits for bytes (the server then
    sends ``100 Continue`` if the client asked for it); ``on_drained`` is called when the
    handler has taken buffered bytes (the server may resume reading the socket).
    """

    __slots__ = ("_chunks", "_error", "_on_drained", "_on_read_start", "_waiter", "buffered", "complete")

    def __init__(self, on_read_start: Callable[[], None], on_drained: Callable[[], None]) -> None:
        self._chunks: Deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self._error: RequestAborted | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_read_start: Callable[[], None] | None = on_read_start
        self._on_drained = on_drained

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def abort(self, reason: str) -> None:
        """Make pending and later reads raise :class:`RequestAborted`, unless the body is complete."""
        if not self.complete and self._error is None:
            self._error = RequestAborted(reason)
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """Return the next buffered chunk, waiting for one; ``b""`` once the body is complete.

        Raises :class:`RequestAborted` if the body will never be complete.
        """
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            if self._on_read_start is not None:
                start, self._on_read_start = self._on_read_start, None
                start()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self.buffered -= len(chunk)
        self._on_drained()
        return chunk
