"""The listener: registers handlers, turns incoming messages into events and runs them.

Subclass :class:`Listener`, implement ``async listen()`` to receive messages and call
``ctx.trigger_event(path)`` (or ``self.trigger_event(path)``) for each, then ``run()`` it, or
start it with ``tiny-listener module:app``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
import warnings
from asyncio.events import _get_running_loop
from typing import (
    Any,
    Awaitable,
    Callable,
    ClassVar,
    Coroutine,
    Dict,
    Generic,
    List,
    Mapping,
    NoReturn,
    Protocol,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from ._types import CoroFunc, EventData, PathParams, Scope
from .context import Context
from .errors import (
    ContextAlreadyExists,
    ContextNotFound,
    DuplicateListener,
    EventAlreadyExists,
    EventFailed,
    EventNotFound,
    ListenerError,
    ListenerNotFound,
    ValidationError,
)
from .event import NO_SCOPE, RELEASED, DispatchedEvent, Event, GivenScope, ScopeSource, SourceEvent, _not_made
from .failures import check_error_type, wait_for
from .injection import Hook, check_coro_func
from .lifecycle import CANCELLED, DONE, ENDED, FAILED, PENDING, RUNNING, EventState
from .routing import Route, RouteShadowedWarning, RouteTable
from .running import PlacedListeners, Runtime, close_loop, running_listeners, thread_event_loop
from .sources.base import Source, SourceState
from .tasks import OwnedTasks, retrieve_exception

logger = logging.getLogger("tiny_listener")

CTXType = TypeVar("CTXType", bound=Context)
_SourceT = TypeVar("_SourceT", bound=Source)


class EventObserver(Protocol):
    """Sees every event start and end; see :meth:`Listener.add_event_observer`."""

    def event_started(self, event: Event[Any]) -> None: ...

    def event_ended(self, event: Event[Any]) -> None: ...


class Listener(Generic[CTXType]):
    """Base class of every listener.

    ``max_event_history`` bounds how many events each context keeps per route;
    ``shutdown_timeout`` is how many seconds shutdown waits for in-flight events before
    cancelling them; ``cancel_timeout`` how long it waits for a cancelled task to end (to nak
    a message, close a connection) before it goes on without it: a task that swallows its
    cancellation is named in a warning and abandoned, the process does not wait for it.
    """

    max_event_history: int = 100
    # Characters of event paths a context's history keeps, all routes together.
    max_event_history_bytes: int = 64 * 1024
    shutdown_timeout: float = 10.0
    # Seconds a cancelled listen() or leftover task may take to end (to nak a message, close
    # a connection) before shutdown goes on without it.
    cancel_timeout: float = 5.0
    # Whether the connections in-flight events use stay open after shutdown cancels listen(),
    # until those events are drained, as with every built-in listener. A listen() written as
    # in 1.2 holds its client in ``async with`` and closes it when cancelled: an event that
    # fails after that is reported as a casualty of the shutdown, on one warning line.
    keeps_connections_while_draining: bool = False

    # 1.2's registry of running listeners, for code and fixtures that read or fill it; see
    # PlacedListeners. The listener running in a thread is known per thread.
    _instances: ClassVar[PlacedListeners] = PlacedListeners()

    def __init__(self, *, max_event_history: int | None = None, shutdown_timeout: float | None = None) -> None:
        if max_event_history is not None:
            self.max_event_history = max_event_history
        if shutdown_timeout is not None:
            self.shutdown_timeout = shutdown_timeout
        self._ctxs: Dict[str, CTXType] = {}
        # Histories are trimmed back to max_event_history once a quarter longer: O(1) per event.
        self._history_trim_at = self.max_event_history + (self.max_event_history >> 2)
        # Made an instance attribute (class default, or as set later): read for every event.
        self.max_event_history_bytes = self.max_event_history_bytes
        self._route_table = RouteTable()
        self.dependency_overrides: Dict[Callable[..., Any], CoroFunc] = {}

        self._startup: List[CoroFunc] = []
        self._shutdown: List[CoroFunc] = []
        self._middleware_before_event: List[Hook] = []
        self._middleware_after_event: List[Hook] = []
        self._error_handlers: List[Tuple[Type[BaseException], Hook]] = []
        self._context_cls: Type[Context] = Context
        self._observers: Tuple[EventObserver, ...] = ()
        self._plain_events = True
        """No observer, no before/after hook: what every source event tests first (see
        _event_here). Kept by the methods that add and remove them (_hooks_changed)."""

        # Anonymous cids are a random per-listener prefix and a counter: unique like uuid4()
        # strings (1.2's cids), for a fraction of the cost of os.urandom per context.
        self._cid_prefix = uuid.uuid4().hex[:16] + "-"
        self._cid_counter = itertools.count()

        self._tasks = OwnedTasks()
        self._runtime = Runtime()
        self._sources: List[Source] = []

    @property
    def routes(self) -> RouteTable:
        """The registered routes, by handler name, in registration order."""
        return self._route_table

    @routes.setter
    def routes(self, routes: Mapping[str, Route]) -> None:
        # 1.2 code and fixtures assign a plain dict: it becomes a RouteTable, so dispatch keeps
        # its index. Raises TypeError if a value is not a Route.
        self._route_table = routes if isinstance(routes, RouteTable) else RouteTable(routes)

    # ------------------------------------------------------------------ registration

    async def listen(self) -> None:
        """Receive messages and trigger events; override it, or host sources instead
        (:meth:`add_source`). It may return at once (after starting a server) or run until
        cancelled at shutdown."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `async def listen(self)` or host a source (add_source)"
        )

    # ------------------------------------------------------------------ sources

    def add_source(self, source: _SourceT) -> _SourceT:
        """Host ``source``: it serves from startup, triggers events on this listener's routes
        and is drained and closed by its shutdown. Returns ``source``.

        Raises :class:`ListenerError` if a source of the same name is hosted already, or if
        the listener is running.
        """
        if self._runtime.loop is not None:
            raise ListenerError(f"cannot add source {source.name!r} to {self!r} while it runs")
        if any(hosted.name == source.name for hosted in self._sources):
            raise ListenerError(f"{self!r} already hosts a source named {source.name!r}")
        source.attach(self)
        self._sources.append(source)
        return source

    @property
    def sources(self) -> Tuple[Source, ...]:
        """The sources this listener hosts, in the order they were added."""
        return tuple(self._sources)

    async def request(self, path: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send ``data`` to event ``path`` as a request through the first hosted source that
        has request/reply (NATS, RabbitMQ) and return the reply, the handler's result decoded
        by the source's codec. The source must be connected (the listener runs).

        Raises :class:`~tiny_listener.NoReply` when nobody takes ``path`` or no reply comes
        within ``timeout`` seconds, :class:`ListenerError` if no hosted source has
        request/reply, and what the source raises while it is not connected.
        """
        for source in self._sources:
            if getattr(source, "can_request", False):
                return await source.request(path, data, timeout=timeout)  # type: ignore[attr-defined]
        raise ListenerError(f"{self!r} hosts no source with request/reply (NATS, RabbitMQ)")

    @property
    def runs_listen(self) -> bool:
        """True if ``main()`` runs ``listen()``: when it is overridden (on the class or the
        instance), or when the listener hosts no source (and then says it must be)."""
        return getattr(self.listen, "__func__", None) is not Listener.listen or not self._sources

    @property
    def ready(self) -> bool:
        """True while the listener runs, is not shutting down, and every source it hosts
        takes messages in: what a readiness probe asks."""
        stop_requested = self._runtime.stop_requested
        if stop_requested is None or stop_requested.is_set():
            return False
        return all(source.ready for source in self._sources)

    def health(self) -> Dict[str, Any]:
        """Return a health report: ``{"status": "ready" | "not ready", "sources": {name:
        source.health()}}``."""
        return {
            "status": "ready" if self.ready else "not ready",
            "sources": {source.name: source.health() for source in self._sources},
        }

    def set_context_cls(self, kls: Type[Context]) -> None:
        """Make new contexts instances of ``kls``, a subclass of :class:`Context`."""
        if not (isinstance(kls, type) and issubclass(kls, Context)):
            raise TypeError(f"{kls!r} must be a subclass of tiny_listener.Context")
        self._context_cls = kls

    def add_on_event_hook(self, fn: CoroFunc, path: str = "{_:path}", **opts: Any) -> None:
        """Register ``fn`` for events matching ``path``; extra ``opts`` land in ``route.opts``.

        Raises :class:`EventAlreadyExists` if a handler of the same name is registered,
        :class:`RouteError` for a bad path, ``TypeError`` for a sync function or a parameter
        that cannot be injected.
        """
        route = Route(path=path, fn=fn, opts=opts)
        if route.name in self.routes:
            raise EventAlreadyExists(f"a handler named {route.name!r} is already registered")
        earlier = self.routes.shadowing(route)
        if earlier is not None:
            warnings.warn(RouteShadowedWarning(earlier, route), stacklevel=3)
        self.routes[route.name] = route

    def remove_on_event_hook(self, name: Union[str, Callable[..., Any]]) -> bool:
        """Unregister a handler by name or function; return False if it was not registered."""
        key = name if isinstance(name, str) else getattr(name, "__name__", "")
        return self.routes.pop(key, None) is not None

    def on_event(self, path: str = "{_:path}", **opts: Any) -> Callable[[CoroFunc], CoroFunc]:
        """Decorator: ``@app.on_event("GET:/user/{username}")``; no path means every event."""

        def decorator(fn: CoroFunc) -> CoroFunc:
            self.add_on_event_hook(fn, path, **opts)
            return fn

        return decorator

    def add_event_observer(self, observer: EventObserver) -> None:
        """Call ``observer.event_started(event)`` when an event's task starts and
        ``observer.event_ended(event)`` when it ends (``event.state`` and ``event.error`` say
        how), synchronously and in the event's task. Observers see every event and never
        handle errors; metrics and tracing middlewares are built on them."""
        self._observers = (*self._observers, observer)
        self._hooks_changed()

    def remove_event_observer(self, observer: EventObserver) -> bool:
        """Stop calling ``observer``; return False if it was not registered."""
        if observer not in self._observers:
            return False
        self._observers = tuple(o for o in self._observers if o is not observer)
        self._hooks_changed()
        return True

    def add_startup_callback(self, fn: CoroFunc) -> None:
        self._startup.append(check_coro_func(fn))

    def add_shutdown_callback(self, fn: CoroFunc) -> None:
        self._shutdown.append(check_coro_func(fn))

    def add_before_event_hook(self, fn: CoroFunc) -> None:
        self._middleware_before_event.append(Hook(fn))
        self._hooks_changed()

    def add_after_event_hook(self, fn: CoroFunc) -> None:
        self._middleware_after_event.append(Hook(fn))
        self._hooks_changed()

    def _hooks_changed(self) -> None:
        self._plain_events = not (self._observers or self._middleware_before_event or self._middleware_after_event)

    def add_on_error_hook(self, fn: CoroFunc, exc: Type[BaseException]) -> None:
        """Call ``fn`` (with injection) for events that fail with an ``exc``.

        Raises ``TypeError`` if ``exc`` is not an exception class or is cancellation (never a
        failure); warns with :class:`~tiny_listener.failures.InterruptHookWarning` for
        ``KeyboardInterrupt`` and ``SystemExit``: handlers raising them reach it, Ctrl-C never.
        """
        self._error_handlers.append((check_error_type(exc), Hook(fn)))

    def startup(self, fn: CoroFunc) -> CoroFunc:
        """Decorator: run ``fn()`` before ``listen()``."""
        self.add_startup_callback(fn)
        return fn

    def shutdown(self, fn: CoroFunc) -> CoroFunc:
        """Decorator: run ``fn()`` at shutdown, after ``listen()`` stopped, before draining."""
        self.add_shutdown_callback(fn)
        return fn

    def before_event(self, fn: CoroFunc) -> CoroFunc:
        """Decorator: run ``fn`` (with injection) before every handler."""
        self.add_before_event_hook(fn)
        return fn

    def after_event(self, fn: CoroFunc) -> CoroFunc:
        """Decorator: run ``fn`` (with injection) after every handler that succeeded."""
        self.add_after_event_hook(fn)
        return fn

    def on_error(self, exc: Type[BaseException]) -> Callable[[CoroFunc], CoroFunc]:
        """Decorator: handle errors of type ``exc`` raised by handlers or hooks; see
        :meth:`add_on_error_hook`."""

        def decorator(fn: CoroFunc) -> CoroFunc:
            self.add_on_error_hook(fn, exc)
            return fn

        return decorator

    def get_route(self, name: str) -> Route:
        """Return the route of handler ``name``; raise :class:`EventNotFound` if none."""
        try:
            return self.routes[name]
        except KeyError:
            raise EventNotFound(f"no handler named {name!r} is registered") from None

    def match_route(self, path: str) -> Tuple[Route, PathParams]:
        """Return the first registered route matching ``path`` and its params.

        Raises :class:`EventNotFound` if no route matches.
        """
        return self.routes.match(path)

    # ------------------------------------------------------------------ contexts

    @property
    def ctxs(self) -> Dict[str, CTXType]:
        """The contexts, by cid: those made with a cid until ``drop()``, anonymous ones while
        an event of theirs runs.

        ``trigger_event(path)`` without a cid makes its event's anonymous context only when
        something asks for it; reading ``ctxs`` makes those of the events still running, so
        that every running event's context is here, as it was when each was made at once.
        Read from a thread other than the running listener's, it holds only the contexts
        made so far (making one there would race with the event's end).
        """
        events = self._tasks.events
        if events and (self._runtime.loop is None or _get_running_loop() is self._runtime.loop):
            # A snapshot: a context class's __init__ could start events.
            for event in tuple(events):
                if type(event) is DispatchedEvent and event._origin is not None and event._state not in ENDED:
                    event._make_context(event._origin)
        return self._ctxs

    @ctxs.setter
    def ctxs(self, ctxs: Dict[str, CTXType]) -> None:
        self._ctxs = ctxs

    def new_ctx(
        self, cid: str | None = None, scope: Dict[str, Any] | None = None, *, context_cls: Type[Context] | None = None
    ) -> CTXType:
        """Create a context, an instance of ``context_cls`` (default: the listener's context
        class, see :meth:`set_context_cls`). Without ``cid`` it is anonymous: released once its
        events end.

        Raises :class:`ContextAlreadyExists` if ``cid`` is taken.
        """
        anonymous = cid is None
        if cid is None:
            cid = self._cid_prefix + str(next(self._cid_counter))
        elif cid in self._ctxs:
            raise ContextAlreadyExists(f"context {cid!r} already exists")
        kls = self._context_cls if context_cls is None else context_cls
        ctx: CTXType = kls(self, cid=cid, scope=scope)  # type: ignore[assignment]
        ctx._anonymous = anonymous
        self._ctxs[cid] = ctx
        return ctx

    def _anonymous_ctx(self, scope: Scope | None) -> CTXType:
        """:meth:`new_ctx` without a cid, for dispatch: an anonymous context of the listener's
        context class, registered in ``ctxs`` (its cid is unique to this listener)."""
        cid = self._cid_prefix + str(next(self._cid_counter))
        ctx: CTXType = self._context_cls(self, cid, scope)  # type: ignore[assignment]
        ctx._anonymous = True
        self._ctxs[cid] = ctx
        return ctx

    def get_ctx(self, cid: str) -> CTXType:
        """Return the context ``cid``; raise :class:`ContextNotFound` if there is none."""
        try:
            return self._ctxs[cid]
        except KeyError:
            raise ContextNotFound(f"context {cid!r} not found") from None

    # ------------------------------------------------------------------ dispatch

    def trigger_event(
        self,
        path: str,
        cid: str | None = None,
        timeout: float | None = None,
        data: EventData | None = None,
        scope: Scope | None = None,
    ) -> asyncio.Task[Any]:
        """Start the handler of the first route matching ``path`` and return its task.

        The event runs in context ``cid`` (created if missing, with ``scope``) or in a new
        anonymous context with ``scope``, made only when something asks for it (``event.ctx``,
        a ``Context`` parameter, reading :attr:`ctxs`...).
        Awaiting the task gives the handler's result, or raises its error (which is also
        logged once, unless an ``on_error`` handler took it). ``timeout`` bounds the handler.
        Raises :class:`EventNotFound` at once if no route matches. Called while no loop runs
        (at import, before ``run()``), it schedules the event on the loop ``setup_event_loop()``
        gives, to start once that loop runs, as 1.2 did; from a thread other than the one of a
        running listener, it raises ``RuntimeError``.
        """
        route, params = self._route_table.match(path)
        if cid is not None:
            found = self._ctxs.get(cid)
            ctx = found if found is not None else self.new_ctx(cid, scope)
            return self._dispatch(ctx, route, params, path, data, timeout)
        # _dispatch() inlined: this is the per-event path of most listeners.
        loop = _get_running_loop()
        if loop is None:
            # Triggered before the loop runs (at import, before run()), as 1.2 allowed.
            loop = self._runtime.loop_before_start(self.setup_event_loop)
        origin = NO_SCOPE if scope is None else GivenScope(scope)
        event = DispatchedEvent(self, route, data or {}, path, params, origin)
        if self._observers:
            # Observers may read the context when the event has ended, too late to make one.
            event._make_context(origin)
        task = asyncio.Task(self._run_event(event, None, params, timeout), loop=loop)
        self._tasks.events[event] = task
        return task

    def trigger_event_in(
        self, ctx: Context, path: str, timeout: float | None = None, data: EventData | None = None
    ) -> asyncio.Task[Any]:
        """Like :meth:`trigger_event`, in the given context object.

        If no route matches, an anonymous context with no event running is released at once
        (as after its last event), so that a context made for a message nobody handles is
        not kept.
        """
        try:
            route, params = self._route_table.match(path)
        except EventNotFound:
            if ctx._anonymous and not ctx._in_flight and not ctx._released:
                ctx._released = True
                self._ctxs.pop(ctx.cid, None)
            raise
        return self._dispatch(ctx, route, params, path, data, timeout)

    def _dispatch(
        self,
        ctx: Context,
        route: Route,
        params: PathParams,
        path: str,
        data: EventData | None,
        timeout: float | None,
    ) -> asyncio.Task[Any]:
        loop = _get_running_loop()
        if loop is None:
            # Triggered before the loop runs (at import, before run()), as 1.2 allowed.
            loop = self._runtime.loop_before_start(self.setup_event_loop)
        event: Event[Any] = Event(ctx, route, data, path, params)
        ctx._event_dispatched(event)
        # Kept in OwnedTasks.events until the event's coroutine ends (see _run_event).
        task = asyncio.Task(self._run_event(event, ctx, params, timeout), loop=loop)
        self._tasks.events[event] = task
        return task

    def _event_here(
        self, task: asyncio.Task[Any], route: Route, params: PathParams, path: str, data: EventData, origin: ScopeSource
    ) -> Tuple[SourceEvent | None, Awaitable[Any]]:
        """Start the event ``path`` (which ``route`` matched, giving ``params``) carrying
        ``data`` in ``task``, the running task; return it and the coroutine of its handler,
        which ``task`` must await at once, then end the event with :meth:`_event_here_done`
        (with the handler's result) or :meth:`_event_here_failed` (with what it raised). The
        event is a :class:`~tiny_listener.event.SourceEvent`: its anonymous context, holding
        ``origin.scope()``, is made only if something asks for it, and its failure is not
        logged here (the source logs it).

        For a source that already runs messages in tasks of its own (the broker delivery
        flow's workers): a task per event, only to be awaited by the source's, would cost a
        task, a loop step and a done callback per event, and a coroutine around the handler's
        (as :meth:`_run_event` is) a frame and a step of delegation per event. ``task`` stands
        as the event's task (``OwnedTasks.events``) while the event runs, so that shutdown
        drains and cancels it as any event's.

        The event is None if nothing could read it: the handler takes only data and path
        parameters (``Data``, ``Param``, a model) and no observer or hook is set. Making,
        registering and ending an event nobody reads was half of what the flow added per
        message to a bare consuming loop (Kafka and Redis Streams, counted in instructions).
        ``task`` (a drain task while it runs) then stands for it at shutdown; if the handler
        fails, the source makes it with :meth:`_source_event` before
        :meth:`_event_here_failed`, for the ``on_error`` handlers.
        """
        if self._plain_events:
            invoke = route._invoke_data
            if invoke is not None and (data or not route._reads_context_if_no_data):
                try:
                    return None, invoke(data, params)
                except BaseException as exc:  # its parameters could not be made (data that does not validate)
                    return None, _raise(exc)
        event = self._source_event(task, route, params, path, data, origin)
        if not self._plain_events:
            observers = self._observers
            if observers:
                # Observers may read the context when the event has ended, too late to make one.
                event._make_context(origin)
                _notify(observers, "event_started", event)
            if self._middleware_before_event or self._middleware_after_event:
                return event, self._with_middleware(event, params)
        try:
            return event, route._invoke(event, params)
        except BaseException as exc:  # its parameters could not be made (data that does not validate)
            return event, _raise(exc)

    def _source_event(
        self, task: asyncio.Task[Any], route: Route, params: PathParams, path: str, data: EventData, origin: ScopeSource
    ) -> SourceEvent:
        """The running event ``path`` of :meth:`_event_here`, with ``task`` standing as its task."""
        event = SourceEvent(self, route, data, path, params, origin)
        event._state = RUNNING  # Event._start(), inlined: a new event is pending
        self._tasks.events[event] = task
        return event

    async def _with_middleware(self, event: Event[Any], params: PathParams, timeout: float | None = None) -> Any:
        """The handler of ``event`` (bounded by ``timeout``) between the ``before_event`` and
        ``after_event`` hooks; returns its result, also set on the event, which the after
        hooks may read."""
        for hook in self._middleware_before_event:
            await hook(event, params)
        invoking = event._route._invoke(event, params)
        event._result = result = await (invoking if timeout is None else wait_for(invoking, timeout))
        for hook in self._middleware_after_event:
            await hook(event, params)
        return result

    def _event_here_done(self, event: SourceEvent, result: Any) -> None:
        """The handler of ``event`` (see :meth:`_event_here`) returned ``result``."""
        event._result = result
        if event._auto_done and event._state is RUNNING and event._waiters is None and not self._observers:
            # _end_event(event, None, DONE), inlined (as in _run_event): the end of nearly
            # every source event.
            event._state = DONE
            made = event._ctx
            if made is not _not_made:  # something asked for the event's context
                ctx = made()
                if ctx is not None:
                    ctx._event_ended(event)
            event.data = RELEASED
            tasks = self._tasks
            del tasks.events[event]
            if tasks.drained is not None:
                tasks.check_drained()
        else:
            self._end_event(event, None, DONE)

    async def _event_here_failed(self, event: SourceEvent, exc: BaseException) -> None:
        """The handler of ``event`` (see :meth:`_event_here`) raised ``exc``: run the matching
        ``on_error`` handlers and end the event; re-raise unless one of them took ``exc``,
        as :meth:`_run_event` does for an event in a task of its own."""
        outcome = FAILED
        try:
            if isinstance(exc, asyncio.CancelledError) or (
                type(exc) is GeneratorExit and not self._tasks.is_running(event)
            ):
                # Cancelled, or the coroutine of the source's task is being closed (abandoned
                # at shutdown and garbage-collected): not the handler's failure.
                outcome = CANCELLED
                raise exc
            event.error = exc
            await self._handle_error(event, event.params, exc, False)
        except asyncio.CancelledError:
            outcome = CANCELLED
            raise
        finally:
            self._end_event(event, None, outcome)

    async def _run_event(
        self, event: Event[Any], ctx: Context | None, params: PathParams, timeout: float | None
    ) -> Any:
        # The coroutine of an event's own task. ``ctx`` is held here so that the context
        # outlives the event even if dropped meanwhile; None for a DispatchedEvent, whose
        # context is made when asked for (and then held by ``listener.ctxs``).
        # Hook lists are tested before looping: most apps have none, and an empty loop costs
        # more than a test on this path.
        if event._state is PENDING:
            event._state = RUNNING  # Event._start(), inlined
        elif not event._start():  # marked done before it started, or a bug (it raises)
            return self._skip_ended(event, ctx)
        observers = self._observers
        if observers:
            _notify(observers, "event_started", event)
        outcome = FAILED
        try:
            try:
                if self._middleware_before_event or self._middleware_after_event:
                    await self._with_middleware(event, params, timeout)
                elif timeout is None:
                    event._result = await event._route._invoke(event, params)
                else:
                    event._result = await wait_for(event._route._invoke(event, params), timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # KeyboardInterrupt, SystemExit... fail the event too
                if type(exc) is GeneratorExit and not self._tasks.is_running(event):
                    # Not raised by the handler: the coroutine of a task abandoned at shutdown
                    # is being closed (garbage-collected).
                    outcome = CANCELLED
                    raise
                event.error = exc
                await self._handle_error(event, params, exc)
                return None
            outcome = DONE
            return event._result
        except asyncio.CancelledError:
            outcome = CANCELLED
            raise
        finally:
            if (outcome is DONE and event._auto_done and event._state is RUNNING and event._waiters is None
                    and not observers):
                # _end_event(), inlined: the end of nearly every event (Event._finish(DONE)
                # without the checks: running to done is a legal transition, no one waits on
                # the event, ``ctx`` is its context).
                event._state = DONE
                if ctx is not None:
                    ctx._event_ended(event)
                elif event._ctx is not _not_made:  # a DispatchedEvent whose context was asked for
                    made = event._ctx()
                    if made is not None:
                        made._event_ended(event)
                event.data = RELEASED
                tasks = self._tasks
                del tasks.events[event]
                if tasks.drained is not None:
                    tasks.check_drained()
            else:
                self._end_event(event, ctx, outcome)

    def _end_event(self, event: Event[Any], ctx: Context | None, outcome: EventState) -> None:
        """End ``event`` with ``outcome`` once its handler returned or raised: its context
        stops counting it, the observers see it end, its data is released and the listener
        forgets its task. ``ctx`` is its context, held by the caller so that it outlives the
        event; None for a :class:`SourceEvent`, whose context (if one was made) is held here
        until the observers have seen the end."""
        if ctx is None:
            ctx = event._ctx()
        observers = self._observers
        if outcome is DONE and event._auto_done and event._state is RUNNING and event._waiters is None:
            # Event._finish(DONE) without its checks (see _run_event).
            event._state = DONE
            if ctx is not None:
                ctx._event_ended(event)
            if observers:
                _notify(observers, "event_ended", event)
            event.data = RELEASED
        elif outcome is not DONE or event._auto_done:
            event._finish(outcome)
            if observers:
                _notify(observers, "event_ended", event)
            # Ended: its context's history keeps the event, not its inputs (_release_inputs).
            event.data = RELEASED
        else:  # kept running by prevent_auto_done(): done() releases them, or did already
            if observers:
                _notify(observers, "event_ended", event)
            if event._state is not RUNNING:
                event.data = RELEASED
        # Forget the event's task (OwnedTasks.events is filled by _dispatch and _event_here).
        tasks = self._tasks
        del tasks.events[event]
        if tasks.drained is not None:
            tasks.check_drained()

    def _skip_ended(self, event: Event[Any], ctx: Context | None) -> Any:
        """End the task of an event marked done before it started (``Event.done()``): its
        handler does not run; the context (if one was made) and the listener stop counting
        it."""
        if ctx is None:
            ctx = event._ctx()
        if ctx is not None:
            ctx._event_ended(event)
        del self._tasks.events[event]
        self._tasks.check_drained()
        return event._result

    async def _handle_error(
        self, event: Event[Any], params: PathParams, exc: BaseException, own_task: bool = True
    ) -> None:
        """Run the matching ``on_error`` handlers; log and re-raise if none takes ``exc``
        (as :class:`EventFailed` if it is not an ``Exception``). ``own_task``: the event runs
        in a task of its own (not in the awaiting one, see :meth:`_event_here`)."""
        handlers = [hook for exc_type, hook in self._error_handlers if isinstance(exc, exc_type)]
        try:
            if not handlers:
                raise exc
            for hook in handlers:
                await hook(event, params)
        except asyncio.CancelledError:
            raise
        except BaseException as failure:
            if event._logs_failures():  # else the source that started the event logs it
                self._log_failure(event, failure)
            # Logged once here; the task still ends with the error for whoever awaits it,
            # and nobody awaiting it must not make asyncio log it a second time.
            # (A task running events in turn, see _event_here, handles the error itself.)
            current = asyncio.current_task() if own_task else None
            if current is not None:
                current.add_done_callback(retrieve_exception)
            if isinstance(failure, Exception):
                raise
            # A task re-raising KeyboardInterrupt or SystemExit stops the event loop.
            raise EventFailed(event.path, event.route.name, failure) from failure

    def _log_failure(self, event: Event[Any], exc: BaseException) -> None:
        fields = {"event_path": event.path, "handler": event.route.name, "cid": event.ctx.cid}
        if isinstance(exc, ValidationError):
            # The data is wrong, not the code: one line naming every field error, no traceback.
            logger.warning(
                "event %r rejected by handler %s (context %s): %s",
                event.path,
                event.route.name,
                event.ctx.cid,
                exc,
                extra=fields,
            )
            return
        if self._runtime.listen_cancelled and not self.keeps_connections_while_draining:
            # listen() was cancelled and closed what it owned, likely what this event used.
            logger.warning(
                "event %r in handler %s (context %s) failed during shutdown, after listen() was cancelled: %r",
                event.path,
                event.route.name,
                event.ctx.cid,
                exc,
                extra=fields,
            )
            return
        logger.error(
            "event %r failed in handler %s (context %s): %r",
            event.path,
            event.route.name,
            event.ctx.cid,
            exc,
            exc_info=exc,
            extra=fields,
        )

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None, drain: bool = False
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by this listener and return the task.

        Use it for work that is not an event: connection handlers, consumer loops, timers,
        acknowledging a message once its event is done. With ``drain=False`` the task is
        cancelled at shutdown; with ``drain=True`` shutdown waits for it as for an in-flight
        event (up to ``shutdown_timeout``). A failure of the task is logged.
        """
        return self._tasks.spawn(coro, name, drain)

    # ------------------------------------------------------------------ running

    @staticmethod
    def setup_event_loop() -> asyncio.AbstractEventLoop:
        """Return the event loop ``run()`` uses; override to use another (uvloop...).

        The default returns the loop set for this thread, as 1.2 did, or a new one if none is
        set or it is closed: ``run()`` works in any thread and after an earlier
        ``asyncio.run()``, and events triggered before ``run()`` run on its loop.
        """
        return thread_event_loop()

    def install_signal_handlers(self) -> None:
        """Make SIGINT/SIGTERM stop the listener (a second one forces); main thread only."""
        self._runtime.signals.install(asyncio.get_running_loop())

    async def graceful_shutdown(self, sig: int | None = None) -> None:
        """Ask the running listener to stop, as a signal does; a second call forces."""
        self._runtime.request_stop()

    def stop(self) -> None:
        """Ask the running listener to stop, as a signal does; safe to call from any thread."""
        self._runtime.request_stop_threadsafe()

    async def wait_for_shutdown(self) -> None:
        """Return once the listener has been asked to stop (for ``listen()`` loops)."""
        stop_requested = self._runtime.stop_requested
        if stop_requested is None:
            raise ListenerNotFound(f"{self!r} is not running")
        await stop_requested.wait()

    async def main(self, *, serve_sources: bool = True) -> None:
        """Run startup hooks, then ``listen()`` (if overridden) and every hosted source; wait
        for a stop request, then shut down. ``serve_sources=False`` leaves the sources
        stopped (the test client's default).

        Re-raises the exception ``listen()`` or a source failed with, after shutting down.
        """
        runtime = self._runtime
        runtime.start()
        self.install_signal_handlers()
        self._tasks.start_janitor()
        intake: List[asyncio.Task[None]] = []
        try:
            for fn in self._startup:
                await fn()
            loop = asyncio.get_running_loop()
            if self.runs_listen:
                intake.append(loop.create_task(self.listen(), name=f"{type(self).__name__}.listen"))
            for source in self._sources if serve_sources else ():
                source.set_state(SourceState.STARTING)
                intake.append(loop.create_task(source.serve(), name=f"source {source.name}"))
            for task in intake:
                task.add_done_callback(self._on_intake_done)
            assert runtime.stop_requested is not None
            await runtime.stop_requested.wait()
            await self._shut_down(intake)
        finally:
            self._tasks.stop_janitor()
            for source in self._sources:
                source.set_state(SourceState.STOPPED)
            runtime.finish()
        if runtime.listen_error is not None:
            raise runtime.listen_error

    def _on_intake_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if self._runtime.listen_error is None:
                self._runtime.listen_error = error
            what = "listen()" if task.get_name().endswith(".listen") else task.get_name()
            # ``intake_failure`` marks the record for the CLI, which reports such a failure itself.
            logger.error("%s failed: %r", what, error, exc_info=error, extra={"intake_failure": what})
            self._runtime.request_stop()

    async def _shut_down(self, intake: List[asyncio.Task[None]]) -> None:
        """The shutdown sequence; every step of it is here, in order."""
        runtime, tasks = self._runtime, self._tasks
        # 1. Stop intake: listen() may own a server or a consumer loop, and each source serves
        #    from its own task. A task that swallows its cancellation must not hang the
        #    process: each wait below is bounded. Connections stay open for step 3.
        for source in self._sources:
            source.set_state(SourceState.DRAINING)
        running = [task for task in intake if not task.done()]
        for task in running:
            if task.get_name().endswith(".listen"):
                runtime.listen_cancelled = True
            task.cancel()
        if running:
            await runtime.unless_forced(asyncio.wait(running), timeout=self.cancel_timeout)
            for task in running:
                if not task.done():
                    what = "listen()" if task.get_name().endswith(".listen") else task.get_name()
                    logger.warning("%s did not stop within %.1fs of being cancelled", what, self.cancel_timeout)
        # 2. Shutdown hooks: listeners written for 1.2 close their servers here.
        for fn in self._shutdown:
            try:
                await runtime.unless_forced(fn())
            except Exception:
                logger.exception("shutdown hook %s failed", getattr(fn, "__qualname__", fn))
        # 3. Let in-flight events finish, up to the deadline or a forcing second signal.
        if tasks.in_flight:
            logger.info("waiting up to %.1fs for %d in-flight event(s)", self.shutdown_timeout, tasks.in_flight)
            await runtime.unless_forced(tasks.wait_drained(), timeout=self.shutdown_timeout)
        # 4. Cancel what is left, and only what this listener started.
        if tasks.in_flight:
            logger.warning("cancelling %d event(s) still running at shutdown", tasks.in_flight)
        stuck = await tasks.cancel_all(timeout=self.cancel_timeout)
        if stuck:
            names = ", ".join(sorted(tasks.describe(task) for task in stuck))
            logger.warning("%d task(s) ignored their cancellation and are left behind: %s", len(stuck), names)
            runtime.abandoned.update(stuck)
        # 5. Close what the sources kept open for the in-flight events.
        for source in self._sources:
            try:
                closed = await runtime.unless_forced(source.close(), timeout=self.cancel_timeout)
            except Exception:
                logger.exception("closing source %s failed", source.name)
            else:
                if not closed:
                    logger.warning("source %s did not close within %.1fs", source.name, self.cancel_timeout)
            source.set_state(SourceState.STOPPED)

    def run(self) -> None:
        """Run the listener in this thread until it is stopped (signal, ``stop()``).

        Raises :class:`DuplicateListener` if this thread already runs a listener, and the
        exception ``listen()`` failed with, if it did.
        """
        current = getattr(running_listeners, "listener", None)
        if current is not None:
            raise DuplicateListener(f"thread {threading.get_ident()} already runs {current!r}")
        running_listeners.listener = self
        try:
            loop = self.setup_event_loop()
            if loop.is_running():
                raise RuntimeError(f"{self!r}.run() called from a running event loop: await its main() instead")
            try:
                loop.run_until_complete(self.main())
            finally:
                close_loop(loop, self._runtime.abandoned)
        finally:
            running_listeners.listener = None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(routes_count={len(self.routes)})"


async def _raise(exc: BaseException) -> NoReturn:
    """A coroutine raising ``exc``: what a failure to start a handler is awaited as."""
    raise exc


def _notify(observers: Tuple[EventObserver, ...], method: str, event: Event[Any]) -> None:
    """Call ``method`` of every observer; one that raises is logged and does not stop the
    event, its clean-up or the other observers."""
    for observer in observers:
        try:
            getattr(observer, method)(event)
        except BaseException:  # even KeyboardInterrupt: an observer never stops the loop
            logger.exception("event observer %r failed in %s for event %r", observer, method, event.path)
