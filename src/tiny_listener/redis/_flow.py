"""Flow control of a consumer, without any I/O: the in-flight bound and per-key ordering."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Dict, Hashable


class InFlightLimit:
    """Counts messages being handled, up to ``limit``; ``wait_free(n)`` waits for room.

    Unlike a semaphore it tells how much room there is, so that a reader can ask the broker
    for exactly that many messages and never hold more than it can run.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._room: asyncio.Future[None] | None = None
        self._wanted = 0
        self._interrupted = False

    @property
    def free(self) -> int:
        return self.limit - self.in_flight

    def take(self) -> None:
        """Count one more message in flight; raise ``RuntimeError`` if the bound is reached."""
        if self.in_flight >= self.limit:
            raise RuntimeError(f"in-flight limit of {self.limit} exceeded")
        self.in_flight += 1

    def release(self) -> None:
        """Count one message less, waking a ``wait_free`` call that now has room."""
        self.in_flight -= 1
        room = self._room
        if room is not None and self.free >= self._wanted and not room.done():
            room.set_result(None)

    def interrupt(self) -> None:
        """Make ``wait_free`` return now and at once from now on, room or not (at shutdown)."""
        self._interrupted = True
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def resume(self) -> None:
        """Undo :meth:`interrupt` (when the listener runs again)."""
        self._interrupted = False

    async def wait_free(self, wanted: int = 1) -> None:
        """Return once at least ``wanted`` slots are free (at once if they are), or when
        interrupted."""
        wanted = min(wanted, self.limit)
        while self.free < wanted and not self._interrupted:
            self._wanted = wanted
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None


class _KeyLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class KeyedLocks:
    """One lock per key, made on first use and forgotten when nobody holds or waits for it.

    ``asyncio.Lock`` serves waiters first come, first served, so events of one key run in the
    order ``hold`` was entered.
    """

    def __init__(self) -> None:
        self._locks: Dict[Hashable, _KeyLock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the lock of ``key`` for the ``async with`` block."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]
