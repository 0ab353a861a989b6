"""Acknowledgements sent in batches: one XACK per stream for every message that finished
handling while the previous XACK was on the wire, instead of one round trip per message."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Coroutine, Generic, List, TypeVar

M = TypeVar("M")
"""What is acknowledged: a message; the source's ``send`` knows what to take from it."""

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[Any]"]


class AckBatcher(Generic[M]):
    """``queue(message)`` queues the message for the next XACK and returns, without waiting
    for Redis.

    The first ``queue`` starts one flushing task (through ``spawn``, so the listener owns it
    and waits for it at shutdown, before the connection closes); every message queued meanwhile
    joins the next batch, which the flusher hands to ``send`` as a list: the source groups the
    ids by stream there, once per batch rather than once per message. ``send`` retries on its
    own until it succeeds and raises once it cannot (the source is closed); ``not_sent(count,
    error)`` then says (logs) that ``count`` acknowledgements were not sent.

    Waiting for the XACK would suspend every message's delivery once more for nothing it needs:
    a message whose XACK is lost (a crash before it was sent) stays pending and is redelivered,
    as with any at-least-once acknowledgement. Only when ``max_pending`` messages wait (Redis is
    slow to take them) does ``queue`` hand back the batch under way to wait for, which bounds
    the queue and slows intake down.
    """

    def __init__(
        self,
        send: Callable[[List[M]], Awaitable[None]],
        spawn: Spawn,
        not_sent: Callable[[int, BaseException], None],
        max_pending: int,
    ) -> None:
        self._send = send
        self._spawn = spawn
        self._not_sent = not_sent
        self.max_pending = max_pending
        self._pending: List[M] = []  # to send next, in the order queued
        self._flusher: asyncio.Task[Any] | None = None

    @property
    def pending(self) -> int:
        """How many acknowledgements wait to be sent (the batch under way not included)."""
        return len(self._pending)

    def queue(self, message: M) -> Awaitable[Any] | None:
        """Queue the acknowledgement of ``message``; return what to await before going on (the
        batch under way) when ``max_pending`` wait, else None (see the class). Not a
        coroutine: most calls have nothing to wait for."""
        pending = self._pending
        pending.append(message)
        flusher = self._flusher
        if flusher is None:
            self._flusher = self._spawn(self._flush())
        elif len(pending) >= self.max_pending:
            return asyncio.shield(flusher)
        return None

    async def _flush(self) -> None:
        sending = 0
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                sending = len(batch)
                await self._send(batch)
                sending = 0
        except Exception as exc:  # the source is closed: said once for the batch, not raised
            self._not_sent(sending + len(self._pending), exc)
            self._pending = []
        except asyncio.CancelledError as exc:  # the shutdown deadline passed
            self._not_sent(sending + len(self._pending), exc)
            self._pending = []
            raise
        finally:
            self._flusher = None
