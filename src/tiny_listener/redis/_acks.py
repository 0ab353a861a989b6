"""Acknowledgements sent in batches: one XACK per stream for every message that finished
handling while the previous XACK was on the wire, instead of one round trip per message."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Coroutine, Dict, List

SendAcks = Callable[[Dict[str, List[bytes]]], Awaitable[None]]
"""Acknowledge the given message ids, by stream; retries on its own until it succeeds, raises
once it cannot (the source is closed)."""

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[Any]"]

NotSent = Callable[[int, BaseException], None]
"""Say (log) that ``count`` acknowledgements were not sent, because of the error."""


class AckBatcher:
    """``queue(stream, id)`` queues the id for the next XACK and returns, without waiting
    for Redis.

    The first ``queue`` starts one flushing task (through ``spawn``, so the listener owns it
    and waits for it at shutdown, before the connection closes); every id queued meanwhile
    joins the next batch. Waiting for the XACK would suspend every message's delivery once more
    for nothing it needs: a message whose XACK is lost (a crash before it was sent) stays
    pending and is redelivered, as with any at-least-once acknowledgement. Only when
    ``max_pending`` ids wait (Redis is slow to take them) does ``queue`` hand back the batch
    under way to wait for, which bounds the queue and slows intake down.
    """

    def __init__(self, send: SendAcks, spawn: Spawn, not_sent: NotSent, max_pending: int) -> None:
        self._send = send
        self._spawn = spawn
        self._not_sent = not_sent
        self.max_pending = max_pending
        # The ids to send next, by stream, as XACK takes them: nothing to regroup per batch.
        self._pending: Dict[str, List[bytes]] = {}
        self._count = 0  # of the ids in _pending
        self._flusher: asyncio.Task[Any] | None = None

    @property
    def pending(self) -> int:
        """How many acknowledgements wait to be sent (the batch under way not included)."""
        return self._count

    def queue(self, stream: str, message_id: bytes) -> Awaitable[Any] | None:
        """Queue the acknowledgement of ``message_id`` of ``stream``; return what to await
        before going on (the batch under way) when ``max_pending`` wait, else None (see the
        class). Not a coroutine: most calls have nothing to wait for."""
        ids = self._pending.get(stream)
        if ids is None:
            self._pending[stream] = [message_id]
        else:
            ids.append(message_id)
        self._count += 1
        flusher = self._flusher
        if flusher is None:
            self._flusher = self._spawn(self._flush())
        elif self._count >= self.max_pending:
            return asyncio.shield(flusher)
        return None

    async def _flush(self) -> None:
        sending = 0
        try:
            while self._pending:
                batch, sending = self._pending, self._count
                self._pending, self._count = {}, 0
                await self._send(batch)
                sending = 0
        except Exception as exc:  # the source is closed: said once for the batch, not raised
            self._not_sent(sending + self._count, exc)
            self._pending, self._count = {}, 0
        except asyncio.CancelledError as exc:  # the shutdown deadline passed
            self._not_sent(sending + self._count, exc)
            self._pending, self._count = {}, 0
            raise
        finally:
            self._flusher = None
