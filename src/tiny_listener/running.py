"""Running a listener: its loop, stop and force requests, signals, and closing the loop.

The shutdown sequence itself is ``Listener._shut_down``, in one place."""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Collection, Dict, Iterator, MutableMapping, Set

from .errors import ListenerNotFound
from .signals import SignalHandlers

if TYPE_CHECKING:
    from .listener import Listener

logger = logging.getLogger("tiny_listener")

# The listener running in each thread: one at most (DuplicateListener otherwise).
running_listeners = threading.local()


def get_current_running_listener() -> Listener[Any]:
    """Return the listener running in this thread; raise :class:`ListenerNotFound` if none.

    A listener put in ``Listener._instances`` for this thread (as 1.2's test fixtures do) is
    returned when none runs here.
    """
    listener: Listener[Any] | None = getattr(running_listeners, "listener", None)
    if listener is None:
        from .listener import Listener  # read at call time: tests patch Listener._instances

        listener = Listener._instances.get(threading.get_ident())
    if listener is None:
        raise ListenerNotFound(f"no listener is running in thread {threading.get_ident()}")
    return listener


class PlacedListeners(MutableMapping[int, "Listener[Any]"]):
    """``Listener._instances``, kept for code written for 1.2: thread ident -> listener.

    1.2 registered every running listener in this class-level dict. Which listener runs in a
    thread is now known by that thread alone (``running_listeners``); this mapping shows it
    for the calling thread, and holds what code puts in it itself, as 1.2's test fixtures do
    to stand a listener in for a running one (``get_current_running_listener()`` finds it).
    """

    def __init__(self) -> None:
        self._placed: Dict[int, Listener[Any]] = {}

    @staticmethod
    def _running_here() -> Listener[Any] | None:
        listener: Listener[Any] | None = getattr(running_listeners, "listener", None)
        return listener

    def __getitem__(self, ident: int) -> Listener[Any]:
        running = self._running_here() if ident == threading.get_ident() else None
        return running if running is not None else self._placed[ident]

    def __setitem__(self, ident: int, listener: Listener[Any]) -> None:
        self._placed[ident] = listener

    def __delitem__(self, ident: int) -> None:
        del self._placed[ident]  # a running listener is not unregistered: run() does that

    def __iter__(self) -> Iterator[int]:
        idents = list(self._placed)
        here = threading.get_ident()
        if here not in self._placed and self._running_here() is not None:
            idents.append(here)
        return iter(idents)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def clear(self) -> None:
        """Forget the placed listeners; a listener running in this thread keeps running."""
        self._placed.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.items())!r})"


def thread_event_loop() -> asyncio.AbstractEventLoop:
    """Return the event loop set for this thread if it is not closed, else a new one, set.

    Like 1.2's ``asyncio.get_event_loop()``, without depending on the loop it made when none
    was set (deprecated in Python 3.12, gone in 3.14): ``run()`` works in any thread and after
    an earlier ``asyncio.run()``.
    """
    with warnings.catch_warnings():
        # Python 3.12 and 3.13 warn when get_event_loop() has to make the loop itself: here
        # making one is what is asked.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_event_loop()
        except RuntimeError:  # none set in this thread
            loop = None
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


class Runtime:
    """The state of one ``main()`` run: the loop, the stop and force requests, the signals."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_requested: asyncio.Event | None = None
        self.force_requested: asyncio.Event | None = None
        self.listen_error: BaseException | None = None
        # Set once shutdown cancelled a listen() still running (see Listener._log_failure).
        self.listen_cancelled = False
        # Tasks that ignored their cancellation at shutdown: named in a warning, not waited for again.
        self.abandoned: Set[asyncio.Task[Any]] = set()
        self.signals = SignalHandlers(self.on_signal)

    def start(self) -> None:
        """Bind to the running loop; call at the start of ``main()``."""
        self.loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        self.force_requested = asyncio.Event()
        self.listen_error = None
        self.listen_cancelled = False
        self.abandoned = set()

    def finish(self) -> None:
        """Restore the signal handlers and unbind; call at the end of ``main()``."""
        self.signals.restore()
        self.loop = None
        self.listen_cancelled = False

    def loop_before_start(self, setup_event_loop: Callable[[], asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
        """Return the loop for an event triggered while no loop runs in this thread: the one
        ``setup_event_loop`` gives, where ``run()`` will run the listener, as in 1.2.

        Raises ``RuntimeError`` if the listener already runs, in another thread.
        """
        if self.loop is not None:
            raise RuntimeError(
                "the listener runs in another thread: trigger events from its event loop "
                "(loop.call_soon_threadsafe), not from this thread"
            )
        return setup_event_loop()

    def on_signal(self, signum: int) -> None:
        if self.stop_requested is not None and self.stop_requested.is_set():
            logger.warning("second signal %d: forcing shutdown", signum)
        else:
            logger.info("signal %d received: shutting down (send it again to force)", signum)
        self.request_stop()

    def request_stop(self) -> None:
        """First call: graceful stop. Later calls: force (stop waiting for in-flight work)."""
        if self.stop_requested is None or self.force_requested is None:
            return
        if self.stop_requested.is_set():
            self.force_requested.set()
        self.stop_requested.set()

    def request_stop_threadsafe(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.request_stop)

    async def unless_forced(self, work: Awaitable[Any], timeout: float | None = None) -> bool:
        """Await ``work`` until it ends, ``timeout`` passes or a forced stop is requested.

        Returns True if ``work`` ended; re-raises its exception.
        """
        assert self.force_requested is not None
        task = asyncio.ensure_future(work)
        forced = asyncio.ensure_future(self.force_requested.wait())
        try:
            await asyncio.wait([task, forced], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, forced):
                if not pending.done():
                    pending.cancel()
            await asyncio.wait([task, forced])
        if task.cancelled():
            return False
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return True


# Seconds ``close_loop`` waits for the tasks it cancels.
CLOSE_TIMEOUT = 5.0


def close_loop(loop: asyncio.AbstractEventLoop, abandoned: Collection[asyncio.Task[Any]] = ()) -> None:
    """Close a loop ``run()`` used, as ``asyncio.run()`` does: every task is cancelled.

    Waits up to ``CLOSE_TIMEOUT`` seconds for them, except for the ``abandoned`` ones: shutdown
    already gave those ``cancel_timeout`` seconds and named them. A task still running when the
    loop closes is named in a warning (once), instead of asyncio's "Task was destroyed but it
    is pending!" when it is garbage-collected.
    """
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            # Bounded: a task that ignores cancellation must not keep the process alive.
            awaited = [task for task in pending if task not in abandoned]
            timeout = CLOSE_TIMEOUT if awaited else 0
            ended, stuck = loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
            for task in ended:
                if not task.cancelled() and task.exception() is not None:
                    logger.error("task %s failed as the loop closed", task.get_name(), exc_info=task.exception())
            for task in stuck:
                if task not in abandoned:
                    logger.warning("task %s still running as the loop closes: abandoned", task.get_name())
                # Said above or at shutdown; asyncio would say it again, at an arbitrary later time.
                task._log_destroy_pending = False  # type: ignore[attr-defined]
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
