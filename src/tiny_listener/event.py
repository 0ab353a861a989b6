"""Events: one run of one handler, in one context."""

from __future__ import annotations

import asyncio
import weakref
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, List, Protocol, TypeVar

from ._types import EventData, PathParams, Scope
from .lifecycle import DONE, ENDED, PENDING, RUNNING, TRANSITIONS, EventState, EventStateError

if TYPE_CHECKING:
    from .context import Context
    from .listener import Listener
    from .routing import Route

CTXType = TypeVar("CTXType", bound="Context")

# What ``data`` of an ended event is: empty, and read-only so that nothing written to it
# afterwards goes unnoticed.
RELEASED: Dict[str, Any] = MappingProxyType({})  # type: ignore[assignment]


class Event(Generic[CTXType]):
    """An event matched to ``route`` in context ``ctx``; ``await event()`` runs its handler.

    ``data`` is what the event carries, ``params`` the converted path parameters, ``result``
    what the handler returned and ``error`` the exception it raised, if any.
    """

    __slots__ = ("_auto_done", "_ctx", "_result", "_route", "_state", "_waiters", "data", "error", "params", "path")

    def __init__(
        self,
        ctx: CTXType,
        route: Route,
        data: EventData | None = None,
        path: str | None = None,
        params: PathParams | None = None,
    ) -> None:
        self.data: EventData = data or {}
        self.error: BaseException | None = None
        self.path: str = route.path if path is None else path
        self.params: PathParams = params if params is not None else {}
        self._route = route
        # Weak, as in 1.2: the context keeps its events, and an event must not keep its
        # context alive in a reference cycle. Dispatch holds the context while the event runs.
        self._ctx: Callable[[], CTXType | None] = weakref.ref(ctx)
        self._state = PENDING
        self._auto_done = True
        self._result: Any = None
        self._waiters: List[asyncio.Future[None]] | None = None

    @property
    def result(self) -> Any:
        """What the handler returned (``None`` until it has)."""
        return self._result

    @property
    def route(self) -> Route:
        return self._route

    @property
    def ctx(self) -> CTXType:
        """The event's context. Raises ``ReferenceError`` if the context was released and
        nothing else kept it (an anonymous context after its events ended)."""
        ctx = self._ctx()
        if ctx is None:
            return self._context_missing()
        return ctx

    def _context_missing(self) -> CTXType:
        raise ReferenceError(f"the context of event {self.path!r} was released")

    @property
    def listener(self) -> Listener[CTXType]:
        return self.ctx.listener

    def _listener_if_any(self) -> Listener[Any] | None:
        """The listener that runs the event, if its context is still there to say."""
        ctx = self._ctx()
        return None if ctx is None else ctx._listener

    def _logs_failures(self) -> bool:
        """Whether the listener logs this event's failure (else its source does)."""
        return self.ctx.log_failures

    @property
    def state(self) -> EventState:
        """Where the event is in its lifecycle (see :mod:`tiny_listener.lifecycle`)."""
        return self._state

    @property
    def running(self) -> bool:
        return self._state is RUNNING

    @property
    def auto_done(self) -> bool:
        return self._auto_done

    @property
    def is_done(self) -> bool:
        """True once the event has ended: done, failed or cancelled."""
        return self._state in ENDED

    def prevent_auto_done(self) -> None:
        """Keep the event running after its handler returns, until ``done()`` is called."""
        self._auto_done = False

    def done(self) -> None:
        """Mark the event done and wake whoever waits for it; does nothing if it has ended.

        An event that has not started (built by hand, or dispatched and its task not started
        yet) ends here, as 1.2 allowed: its handler will not run.
        """
        if self._state is PENDING:
            # Its context counts it only once dispatched; its task tells it (_skip_ended).
            self._finish(DONE, tell_context=False)
        elif self._state not in ENDED:
            self._finish(DONE)
            listener = self._listener_if_any()
            if listener is None or self not in listener._tasks.events:
                self._release_inputs()  # its task is over too (else its end releases them)

    def _release_inputs(self) -> None:
        """Drop ``data`` once the event has ended (and observers have seen it): its context's
        history keeps the event, not the message it carried. ``params`` stay: they are parts
        of ``path``, which the history bounds."""
        self.data = RELEASED

    def _start(self) -> bool:
        """Move the event to running and return True; return False for an event marked done
        before its task started (``done()``), which must not run."""
        state = self._state
        # Pending is the one state TRANSITIONS lets start. An identity test: looking the
        # table up (two enum hashes) would cost more than the rest of this method.
        if state is PENDING:
            self._state = RUNNING
            return True
        if state is DONE:
            return False
        raise EventStateError(self.path, state, RUNNING)

    def _finish(self, state: EventState, tell_context: bool = True) -> None:
        if state not in TRANSITIONS[self._state]:
            raise EventStateError(self.path, self._state, state)
        self._state = state
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if tell_context:
            ctx = self._ctx()
            if ctx is not None:
                ctx._event_ended(self)

    async def wait_until_done(self) -> None:
        """Return once the event has ended; returns at once if it already has."""
        if self._state in ENDED:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter

    async def wait_event_done(self, event_name: str, n: int = 1, timeout: float | None = None) -> List[Any]:
        """Wait until ``n`` events of handler ``event_name`` in this context have ended.

        Returns the results of the latest ``n`` ended ones, oldest first. Raises
        :class:`~tiny_listener.EventNotFound` for an unknown handler name and
        ``asyncio.TimeoutError`` when ``timeout`` seconds pass first.
        """
        route = self.listener.get_route(event_name)
        return await self.ctx.wait_events_done(route, n, timeout)

    async def __call__(self, params: PathParams | None = None) -> Any:
        """Run the handler with injected parameters and return (and keep) its result."""
        self._result = await self._route.hook(self, self.params if params is None else params)
        return self._result

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(path={self.path!r}, route={self._route!r}, state={self._state.value})"


def _not_made() -> None:
    """What a :class:`SourceEvent` holds for its context until one is asked for: no context."""
    return None


class ScopeSource(Protocol):
    """What a :class:`SourceEvent` makes its context's scope from: a broker's message."""

    def scope(self) -> Scope: ...


class SourceEvent(Event[Any]):
    """An event a source runs in a task of its own (a broker delivery flow's worker), whose
    context is made only when something asks for it: ``event.ctx``, a ``Context`` parameter, a
    cached dependency, an observer reading the cid. Most handlers of broker messages ask for
    none, and making an anonymous context (a cid, a registration in ``listener.ctxs``, a
    history, a scope) was a third of what the flow added per message to a bare consuming loop.
    Until it is made, ``listener.ctxs`` does not
    hold it; once made, it is the anonymous context the event would have had (its scope comes
    from ``origin.scope()``), released when the event ends. Once the event has ended, a context
    never made is a released one: ``ctx`` raises ``ReferenceError``.

    The source logs the failures of its events itself (their context's ``log_failures`` is
    False).
    """

    __slots__ = ("_listener", "_origin")

    def __init__(
        self, listener: Listener[Any], route: Route, data: EventData, path: str, params: PathParams, origin: ScopeSource
    ) -> None:
        # Event.__init__'s attributes, set here directly (this runs for every message), with
        # no context yet.
        self.data = data
        self.error = None
        self.path = path
        self.params = params
        self._route = route
        self._ctx = _not_made
        self._state = PENDING
        self._auto_done = True
        self._result = None
        self._waiters = None
        self._listener = listener
        self._origin: ScopeSource | None = origin

    def _context_missing(self) -> Any:
        origin = self._origin
        if origin is None or self._state in ENDED:
            return super()._context_missing()
        return self._make_context(origin)

    def _make_context(self, origin: ScopeSource) -> Any:
        """Make the event's context, as the listener's dispatch makes an anonymous one:
        registered in ``listener.ctxs`` (which holds it while the event runs), the event in
        its history, released when the event ends."""
        self._origin = None
        ctx = self._listener._anonymous_ctx(origin.scope())
        ctx.log_failures = self._logs_failures()
        ctx._first_event_dispatched(self)
        self._ctx = weakref.ref(ctx)
        return ctx

    @property
    def listener(self) -> Listener[Any]:
        return self._listener

    def _listener_if_any(self) -> Listener[Any] | None:
        return self._listener

    def _logs_failures(self) -> bool:
        return False


class GivenScope:
    """The origin of a :class:`DispatchedEvent` given a scope (``NO_SCOPE`` without one):
    the scope itself."""

    __slots__ = ("_scope",)

    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    def scope(self) -> Scope:
        return self._scope


class _NoScope:
    """The origin of a :class:`DispatchedEvent` given no scope: a new, empty one."""

    __slots__ = ()

    def scope(self) -> Scope:
        return {}


NO_SCOPE: ScopeSource = _NoScope()


class DispatchedEvent(SourceEvent):
    """An event of ``listener.trigger_event(path)`` without a cid: its anonymous context is
    made only when something asks for it, as a :class:`SourceEvent`'s, but the listener logs
    its failure (it runs in a task of its own, which whoever triggered it may never await).
    Most handlers ask for no context, and making one (a cid, a registration in
    ``listener.ctxs``, a history, a weak reference) was more than half of what dispatch
    added to a bare ``asyncio`` task. Reading ``listener.ctxs`` makes the contexts of those
    still running (see ``Listener.ctxs``)."""

    __slots__ = ()

    def _logs_failures(self) -> bool:
        made = self._ctx()
        return True if made is None else bool(made.log_failures)
