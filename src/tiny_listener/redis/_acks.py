"""Acknowledgements sent in batches: one XACK per stream for every message that finished
handling while the previous XACK was on the wire, instead of one round trip per message."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Coroutine, Dict, List, Tuple

SendAcks = Callable[[Dict[str, List[bytes]]], Awaitable[None]]
"""Acknowledge the given message ids, by stream; retries on its own until it succeeds."""

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[Any]"]


class AckBatcher:
    """``await ack(stream, id)`` returns once the id is acknowledged in Redis.

    The first ``ack`` starts one flushing task (through ``spawn``, so the listener owns it and
    lets it finish at shutdown); every ``ack`` made meanwhile joins the next batch.
    """

    def __init__(self, send: SendAcks, spawn: Spawn) -> None:
        self._send = send
        self._spawn = spawn
        self._pending: List[Tuple[str, bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[Any] | None = None

    async def ack(self, stream: str, message_id: bytes) -> None:
        """Acknowledge ``message_id`` of ``stream``; return once Redis has it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, message_id, done))
        if self._flusher is None:
            self._flusher = self._spawn(self._flush())
        await done

    async def _flush(self) -> None:
        batch: List[Tuple[str, bytes, asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                ids: Dict[str, List[bytes]] = {}
                for stream, message_id, _ in batch:
                    ids.setdefault(stream, []).append(message_id)
                await self._send(ids)
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
                batch = []
        except Exception as exc:
            # Each waiter gets the error (and logs it); raising here too would log it twice.
            for _, _, done in (*batch, *self._pending):
                if not done.done():
                    done.set_exception(exc)
            self._pending = []
        finally:
            self._flusher = None
            # Cancelled (shutdown deadline): whoever waits learns the ack did not happen.
            for _, _, done in (*batch, *self._pending):
                done.cancel()
            self._pending = []
