"""Contexts: what several events share (a connection, a session, a request)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING, Any, DefaultDict, Dict, List

from ._types import EventData, Scope
from .event import Event

if TYPE_CHECKING:
    from .injection import Depends
    from .listener import Listener
    from .routing import Route


class _EventWaiter:
    """A ``wait_events_done`` call: how many more events of ``route`` must end."""

    __slots__ = ("future", "missing", "route")

    def __init__(self, route: Route, missing: int, future: asyncio.Future[None]) -> None:
        self.route = route
        self.missing = missing
        self.future = future


class Context:
    """A context groups events under one ``cid`` and gives them a shared ``scope`` and ``cache``.

    Subclass it and call ``listener.set_context_cls(MyContext)`` to give contexts methods, as the
    seed's ``HTTPContext.response()`` does. ``events`` keeps, per route, a list of the latest
    events: at least ``listener.max_event_history`` of them, trimmed back to that number once it
    grows a quarter longer (trimming in batches keeps recording O(1)); and, all routes together,
    no more than ``listener.max_event_history_bytes`` characters of event paths (past that, the
    oldest events go, down to half of it). An ended event keeps its path, params, state, result
    and error, not its data: a long-lived context does not hold every message it got.

    A context made with a cid lives until ``drop()``. One made without a cid (*anonymous*, one
    per HTTP request for instance) is released from ``listener.ctxs`` as soon as none of its
    events is still running.
    """

    # __dict__ stays: 1.2 let users set their own attributes on a context.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_anonymous",
        "_cache",
        "_event_waiters",
        "_history_bytes",
        "_in_flight",
        "_listener",
        "_released",
        "cid",
        "events",
        "log_failures",
        "scope",
    )

    def __init__(self, listener: Listener[Any], cid: str, scope: Scope | None = None) -> None:
        self.cid = cid
        self._cache: Dict[Depends, Any] | None = None
        self.scope: Scope = scope or {}
        self.events: DefaultDict[Route, List[Event[Any]]] = defaultdict(list)
        self._history_bytes = 0  # the length of the paths of the events in ``events``
        self._listener = listener
        self._anonymous = False
        self._released = False
        self._in_flight = 0
        self.log_failures = True
        """Whether the listener logs the failure of an event of this context that no
        ``on_error`` handler took (once, with its traceback). A source that reports failures
        itself sets it to False: a broker's delivery flow logs a retry as one warning and only
        the last failure with its traceback."""
        # One ``_EventWaiter`` per pending ``wait_events_done`` call.
        self._event_waiters: List[_EventWaiter] | None = None

    @property
    def listener(self) -> Listener[Any]:
        return self._listener

    @property
    def cache(self) -> Dict[Depends, Any]:
        """Results of ``Depends(use_cache=True)`` dependencies, computed once per context."""
        # Made on first use: most contexts (one per request) never resolve a dependency.
        if self._cache is None:
            self._cache = {}
        return self._cache

    @property
    def is_alive(self) -> bool:
        """True while ``listener.ctxs`` holds this context."""
        return self._listener._ctxs.get(self.cid) is self

    def drop(self) -> bool:
        """Remove this context from ``listener.ctxs``; return False if it was not there."""
        if self.is_alive:
            del self._listener._ctxs[self.cid]
            return True
        return False

    def new_event(self, route: Route, data: EventData | None = None) -> Event[Any]:
        """Create an event of ``route`` in this context and record it in ``events``."""
        event: Event[Any] = Event(self, route, data)
        self._record(event)
        return event

    def _record(self, event: Event[Any]) -> None:
        history = self.events[event._route]
        history.append(event)
        self._history_bytes += len(event.path)
        listener = self._listener
        if len(history) > listener._history_trim_at or self._history_bytes > listener.max_event_history_bytes:
            self._trim_history(history)

    def _trim_history(self, latest: List[Event[Any]]) -> None:
        """Trim ``latest`` (the history an event was just added to) back to
        ``max_event_history``; then, if the paths kept are over ``max_event_history_bytes``,
        drop the oldest events of every route until half of that is left (never the event
        just added)."""
        listener = self._listener
        keep = listener.max_event_history
        if len(latest) > keep:
            self._history_bytes -= sum(len(event.path) for event in latest[:-keep])
            del latest[:-keep]
        target = listener.max_event_history_bytes // 2
        if self._history_bytes <= listener.max_event_history_bytes:
            return
        for history in self.events.values():
            cut = 0
            limit = len(history) - 1 if history is latest else len(history)
            while cut < limit and self._history_bytes > target:
                self._history_bytes -= len(history[cut].path)
                cut += 1
            del history[:cut]
            if self._history_bytes <= target:
                return

    def trigger_event(
        self, path: str, timeout: float | None = None, data: EventData | None = None
    ) -> asyncio.Task[Any]:
        """Dispatch the event ``path`` in this context; see :meth:`Listener.trigger_event`."""
        return self._listener.trigger_event_in(self, path, timeout=timeout, data=data)

    async def wait_events_done(self, route: Route, n: int = 1, timeout: float | None = None) -> List[Any]:
        """Wait until ``n`` events of ``route`` in this context have ended.

        Events that ended earlier and are still in ``events`` count. Returns the results of
        the latest ``n`` ended events, oldest first. Raises ``ValueError`` if ``n`` exceeds the
        history length, ``asyncio.TimeoutError`` when ``timeout`` passes first.
        """
        history = self.events[route]
        keep = self._listener.max_event_history
        if n > keep:
            raise ValueError(f"cannot wait for {n} events: the context keeps only the latest {keep}")
        missing = n - sum(1 for event in history if event.is_done)
        if missing > 0:
            waiter = _EventWaiter(route, missing, asyncio.get_running_loop().create_future())
            if self._event_waiters is None:
                self._event_waiters = []
            self._event_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter.future, timeout)
            finally:
                self._event_waiters.remove(waiter)
        ended = [event.result for event in history if event.is_done]
        return ended[-n:] if n > 0 else []

    def _event_dispatched(self, event: Event[Any]) -> None:
        # _record(), inlined: this runs for every event.
        history = self.events[event._route]
        history.append(event)
        self._history_bytes += len(event.path)
        listener = self._listener
        if len(history) > listener._history_trim_at or self._history_bytes > listener.max_event_history_bytes:
            self._trim_history(history)
        self._in_flight += 1
        if self._released:
            # A released anonymous context runs events again: it is registered while it does.
            self._released = False
            self._listener._ctxs.setdefault(self.cid, self)

    def _first_event_dispatched(self, event: Event[Any]) -> None:
        """:meth:`_event_dispatched` for the first event of a context just made (an anonymous
        one, by the listener's dispatch): it has no history to trim nor to be kept for."""
        self.events[event._route] = [event]
        self._history_bytes = len(event.path)
        self._in_flight = 1

    def _event_ended(self, event: Event[Any]) -> None:
        if self._event_waiters:
            self._wake_waiters(event._route)
        self._in_flight -= 1
        if self._in_flight == 0 and self._anonymous:
            self._released = True
            # Anonymous cids are unique to this listener: whatever holds the key is this context.
            self._listener._ctxs.pop(self.cid, None)

    def _wake_waiters(self, route: Route) -> None:
        for waiter in self._event_waiters or ():
            if waiter.route is route:
                waiter.missing -= 1
                if waiter.missing <= 0 and not waiter.future.done():
                    waiter.future.set_result(None)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(cid={self.cid!r}, scope={self.scope!r})"
