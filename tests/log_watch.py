"""Waiting for a log line: for the outcomes that only the logs announce (a connection lost, a
reconnect attempt, a dead letter written), shared by the broker tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Iterator


class LogWatch(logging.Handler):
    """Counts the records containing ``text`` (in ``seen``); ``wait(n)`` returns once ``n``
    were seen. Records must be logged from the event loop's thread."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = 0
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen += 1
            self._changed.set()

    async def wait(self, count: int = 1) -> None:
        """Return once ``count`` matching records have been logged (at once if they were)."""
        while self.seen < count:
            self._changed.clear()
            await self._changed.wait()


@contextlib.contextmanager
def watching_log(logger_name: str, text: str) -> Iterator[LogWatch]:
    """A :class:`LogWatch` for ``text`` on logger ``logger_name`` while the block runs; it is
    removed from the logger afterwards."""
    watch = LogWatch(text)
    logger = logging.getLogger(logger_name)
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
