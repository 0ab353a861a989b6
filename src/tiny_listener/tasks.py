"""The tasks a listener owns: every one is kept, and awaited or cancelled at shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Coroutine, Dict, List, Set

from .lifecycle import CANCELLED, PENDING

if TYPE_CHECKING:
    from .event import Event

logger = logging.getLogger("tiny_listener")


class EventTask(asyncio.Task):  # type: ignore[type-arg]
    """The task of one event.

    Made directly rather than with ``loop.create_task`` to keep dispatch cheap. It needs no
    done-callback: the event's coroutine does its own bookkeeping, except when the task is
    cancelled before its first step (the coroutine is then closed without running a line),
    which ``cancel`` covers.
    """

    __slots__ = ("_event", "_owner")
    _event: Event[Any]
    _owner: OwnedTasks

    def cancel(self, msg: Any = None) -> bool:
        event = self._event
        if event._state is PENDING and not self.done():
            event._finish(CANCELLED)
            self._owner.event_ended(event)
        return super().cancel(msg)


def retrieve_exception(task: asyncio.Future[Any]) -> None:
    """Done-callback: mark a task's exception as seen, so asyncio does not log it again."""
    if not task.cancelled():
        task.exception()


class OwnedTasks:
    """Event tasks (by event) and ``spawn``-ed tasks, and a way to wait until they are done.

    Event tasks and drain tasks are waited for at shutdown; background tasks are cancelled.
    """

    def __init__(self) -> None:
        self.events: Dict[Event[Any], asyncio.Task[Any]] = {}
        self.drain: Set[asyncio.Task[Any]] = set()
        self.background: Set[asyncio.Task[Any]] = set()
        # Set once nothing is left to drain, while someone waits for that.
        self.drained: asyncio.Event | None = None

    def event_ended(self, event: Event[Any]) -> None:
        """Forget the task of ``event``; called as the event ends."""
        del self.events[event]
        self.check_drained()

    def check_drained(self) -> None:
        """Wake ``wait_drained`` if no event or drain task is left."""
        if self.drained is not None and not self.events and not self.drain:
            self.drained.set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None, drain: bool) -> asyncio.Task[Any]:
        """Start ``coro`` as an owned task (drained at shutdown if ``drain``) and return it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        (self.drain if drain else self.background).add(task)
        task.add_done_callback(self._spawned_done)
        return task

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        self.drain.discard(task)
        self.check_drained()
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def in_flight(self) -> int:
        """How many event and drain tasks are still running."""
        return len(self.events) + len(self.drain)

    async def wait_drained(self) -> None:
        """Return once no event or drain task is left (new ones started meanwhile count)."""
        if not self.in_flight:
            return
        self.drained = asyncio.Event()
        try:
            await self.drained.wait()
        finally:
            self.drained = None

    async def cancel_all(self) -> int:
        """Cancel every owned task, wait until they have ended; return how many were in flight."""
        late = self.in_flight
        leftovers: List[asyncio.Task[Any]] = [*self.events.values(), *self.drain, *self.background]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers)
        return late
