"""Install SIGINT/SIGTERM handlers on a loop and put back the ones they replaced."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any, Callable, Dict

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def is_main_thread() -> bool:
    """Return True in the main thread, the only one where signal handlers can be set."""
    return threading.current_thread() is threading.main_thread()


class SignalHandlers:
    """Route the handled signals to ``callback(signum)`` while installed."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self._callback = callback
        self._previous: Dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Install on ``loop``; return False (and do nothing) outside the main thread."""
        if not is_main_thread() or self._loop is not None:
            return False
        self._loop = loop
        for sig in HANDLED_SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._callback, sig)
        return True

    def restore(self) -> None:
        """Remove our handlers and reinstate the previous ones."""
        if self._loop is None:
            return
        for sig, previous in self._previous.items():
            self._loop.remove_signal_handler(sig)
            # remove_signal_handler installs the default; put back whatever was there before.
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        self._loop = None
