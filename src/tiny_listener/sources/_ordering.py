"""Per-key ordering of a broker source, without any I/O: messages of one key are handled one at
a time, in the order they were received (see ``BrokerSource.ordering_key``)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Dict, Hashable


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
