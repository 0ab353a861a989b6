"""The tasks a listener owns: every one is kept, and awaited or cancelled at shutdown."""

from __future__ import annotations

import asyncio
import logging
from contextvars import Context
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Dict, List, Optional, Set, Tuple

from .lifecycle import CANCELLED, PENDING, RUNNING

if TYPE_CHECKING:
    from .event import Event

logger = logging.getLogger("tiny_listener")

EventOfTask = Callable[[asyncio.Task[Any]], Optional[Tuple[str, str]]]
"""``running(task)``: the event ``task`` runs now, as (path, handler name), or None."""


def retrieve_exception(task: asyncio.Future[Any]) -> None:
    """Done-callback: mark a task's exception as seen, so asyncio does not log it again."""
    if not task.cancelled():
        task.exception()


class OwnedTasks:
    """Event tasks (by event) and ``spawn``-ed tasks, and a way to wait until they are done.

    Event tasks and drain tasks are waited for at shutdown; background tasks are cancelled.
    """

    # How often, in seconds, the janitor looks for event tasks cancelled before they started.
    reap_interval = 1.0

    def __init__(self) -> None:
        self.events: Dict[Event[Any], asyncio.Task[Any]] = {}
        self._janitor: asyncio.TimerHandle | None = None
        self.drain: Set[asyncio.Task[Any]] = set()
        self.background: Set[asyncio.Task[Any]] = set()
        # For a spawned task that runs events without standing as their task (a broker
        # flow's worker running a handler that has no Event, see Listener._event_here): what
        # says which event it runs now.
        self._running: Dict[asyncio.Task[Any], EventOfTask] = {}
        # Set once nothing is left to drain, while someone waits for that.
        self.drained: asyncio.Event | None = None

    def check_drained(self) -> None:
        """Wake ``wait_drained`` if no event or drain task is left."""
        if self.drained is not None and not self.events and not self.drain:
            self.drained.set()

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        name: str | None,
        drain: bool,
        context: Context | None = None,
        running: EventOfTask | None = None,
    ) -> asyncio.Task[Any]:
        """Start ``coro`` as an owned task (drained at shutdown if ``drain``), in ``context``
        (default: a copy of the current one), and return it. ``running(task)``, if given,
        says which event the task runs, for :meth:`describe`."""
        loop = asyncio.get_running_loop()
        if context is None:
            task = loop.create_task(coro, name=name)
        else:
            # A task copies the context it is made in (create_task's context= is Python 3.11+).
            task = context.run(loop.create_task, coro, name=name)
        (self.drain if drain else self.background).add(task)
        if running is not None:
            self._running[task] = running
        task.add_done_callback(self._spawned_done)
        return task

    def mark_busy(self, task: asyncio.Task[Any]) -> None:
        """Count ``task``, a background task that was given work (a source's worker taking
        messages), as a drain task: shutdown waits for it until :meth:`mark_idle`."""
        self.drain.add(task)

    def mark_idle(self, task: asyncio.Task[Any]) -> None:
        """``task`` has no work left (see :meth:`mark_busy`): shutdown no longer waits for it."""
        self.drain.discard(task)
        if self.drained is not None:
            self.check_drained()

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        self.drain.discard(task)
        self._running.pop(task, None)
        self.check_drained()
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    def reap_unstarted(self) -> int:
        """End the events whose task was cancelled before its first step; return how many.

        Such a task closes its coroutine without running a line of it, so the event's own
        clean-up never runs; an event marked done meanwhile (``Event.done()``) stays done.
        Event tasks are plain ``asyncio.Task`` objects (a subclass that intercepts ``cancel``
        makes every awaiting of them slower), so the listener looks for them instead: every
        ``reap_interval`` seconds while it runs, and at shutdown.
        """
        unstarted = [event for event, task in self.events.items() if event._state is not RUNNING and task.done()]
        for event in unstarted:
            del self.events[event]
            if event._state is PENDING:
                event._finish(CANCELLED)
            else:
                ctx = event._ctx()
                if ctx is not None:
                    ctx._event_ended(event)
            event._release_inputs()
        if unstarted:
            self.check_drained()
        return len(unstarted)

    def start_janitor(self) -> None:
        """Call :meth:`reap_unstarted` every ``reap_interval`` seconds until ``stop_janitor``."""
        self._janitor = asyncio.get_running_loop().call_later(self.reap_interval, self._janitor_round)

    def _janitor_round(self) -> None:
        self.reap_unstarted()
        self.start_janitor()

    def stop_janitor(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None

    def describe(self, task: asyncio.Task[Any]) -> str:
        """Name ``task`` for a log line: by its event if it runs one, else by its task name."""
        running = next(((e.path, e.route.name) for e, t in self.events.items() if t is task), None)
        if running is None and task in self._running:
            running = self._running[task](task)
        if running is None:
            return task.get_name()
        path, handler = running
        return f"event {path[:200]!r} in handler {handler}"

    def is_running(self, event: Event[Any]) -> bool:
        """True if the code running now is ``event``'s own task, stepped by its event loop."""
        task = self.events.get(event)
        try:
            return task is not None and task is asyncio.current_task()
        except RuntimeError:  # no running loop: the loop is closed
            return False

    @property
    def in_flight(self) -> int:
        """How many events and drain tasks are still running; a drain task that stands as a
        running event's task (a broker flow's worker, see ``Listener._event_here``) counts
        once, as that event."""
        events, drain = self.events, self.drain
        if not drain:
            return len(events)
        standing = set(events.values())
        return len(events) + sum(1 for task in drain if task not in standing)

    async def wait_drained(self) -> None:
        """Return once no event or drain task is left (new ones started meanwhile count)."""
        self.reap_unstarted()
        if not self.in_flight:
            return
        self.drained = asyncio.Event()
        try:
            await self.drained.wait()
        finally:
            self.drained = None

    async def cancel_all(self, timeout: float | None = None) -> Set[asyncio.Task[Any]]:
        """Cancel every owned task and wait up to ``timeout`` seconds for them to end.

        Returns the tasks still running then: they ignored their cancellation.
        """
        leftovers: List[asyncio.Task[Any]] = [*self.events.values(), *self.drain, *self.background]
        for task in leftovers:
            task.cancel()
        stuck: Set[asyncio.Task[Any]] = set()
        if leftovers:
            _, stuck = await asyncio.wait(leftovers, timeout=timeout)
        self.reap_unstarted()
        return stuck
