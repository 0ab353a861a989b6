"""What counts as an event failure: every ``BaseException`` raised in an event's task except
its cancellation.

A handler, hook or dependency that raises ``KeyboardInterrupt``, ``SystemExit``,
``GeneratorExit`` or a ``BaseException`` subclass of its own fails its event like one that
raises ``ValueError``: the process stops only for real signals, which the listener's own
signal handlers turn into a graceful shutdown (they never arrive as a ``KeyboardInterrupt``
inside a handler).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Awaitable, Type, TypeVar

T = TypeVar("T")


class InterruptHookWarning(UserWarning):
    """``on_error(KeyboardInterrupt)`` or ``on_error(SystemExit)`` was registered: it is called
    for those raised by handlers, never for Ctrl-C or SIGTERM."""

    def __init__(self, exc_type: Type[BaseException]) -> None:
        self.exc_type = exc_type
        super().__init__(
            f"on_error({exc_type.__name__}) is called when a handler, hook or dependency raises "
            f"{exc_type.__name__} itself; Ctrl-C and SIGTERM never reach it: they stop the listener "
            "gracefully (run code at that moment with @app.shutdown)"
        )


def check_error_type(exc_type: Any) -> Type[BaseException]:
    """Return ``exc_type`` if ``on_error`` can be registered for it.

    Raises ``TypeError`` for what is not an exception class, or is cancellation (a cancelled
    event ends ``cancelled``, not ``failed``: such a hook would never run); warns with
    :class:`InterruptHookWarning` for ``KeyboardInterrupt`` and ``SystemExit``.
    """
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise TypeError(f"on_error() takes an exception class, not {exc_type!r}")
    if issubclass(exc_type, asyncio.CancelledError):
        raise TypeError(
            f"on_error({exc_type.__name__}) would never run: a cancelled event is not a failure, "
            "it ends 'cancelled' (event observers see it)"
        )
    if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        warnings.warn(InterruptHookWarning(exc_type), stacklevel=4)
    return exc_type


class _Carried(Exception):
    """A ``KeyboardInterrupt`` or ``SystemExit`` carried out of a task ``wait_for`` made."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


async def _carry(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except (KeyboardInterrupt, SystemExit) as exc:
        raise _Carried(exc) from None


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for``, except that a ``KeyboardInterrupt`` or ``SystemExit`` raised by
    ``awaitable`` is raised here, in the caller's task.

    Before Python 3.12 ``wait_for`` runs ``awaitable`` in a task of its own, and a task whose
    coroutine raises one of those two re-raises it out of the event loop, ending the loop.
    """
    try:
        return await asyncio.wait_for(_carry(awaitable), timeout)
    except _Carried as carried:
        raise carried.error from None
