"""``TestClient``: run an app around a test without its ``listen()``.

The client runs the app's real ``main()``, with ``listen()`` replaced for the app instance by
one that receives nothing, so startup hooks, shutdown hooks and the drain-then-cancel of
in-flight events at exit are exactly those of production. Events come from the test instead:
``await client.trigger(path)``. With ``listen=True`` the app's own ``listen()`` runs too, for
clients that talk to the app through its transport (:class:`~tiny_listener.testing.http.HTTPTestClient`).
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType
from typing import Any, Dict, List, Type

from .._types import EventData, Scope
from ..listener import Listener
from .recorder import EventRecord, EventRecorder

# Apps a client is running: one client at a time per app, as one main() at a time.
_running_apps: weakref.WeakSet[Listener[Any]] = weakref.WeakSet()

_MISSING = object()


class TestClient:
    """``async with TestClient(app) as client:`` runs the app's startup hooks (not ``listen()``),
    lets the test trigger events with :meth:`trigger`, records every event the app handles in
    :attr:`events`, and on exit shuts the app down as production does: shutdown hooks, then
    in-flight events awaited up to the shutdown timeout, then cancelled.

    ``shutdown_timeout`` replaces ``app.shutdown_timeout`` while the client runs. With
    ``listen=True`` the app's ``listen()`` and the sources it hosts run after the startup
    hooks, as in production.
    Signal handlers are not installed, so Ctrl-C still interrupts the test run.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, app: Listener[Any], *, shutdown_timeout: float | None = None, listen: bool = False) -> None:
        self.app = app
        self.shutdown_timeout = shutdown_timeout
        self.listen = listen
        self.recorder = EventRecorder()
        self._main: asyncio.Task[None] | None = None
        self._shadowed: Dict[str, Any] = {}

    async def wait_stopped(self) -> None:
        """Return once the app's ``main()`` has ended (``listen()`` failed, or the exit);
        raises what ``main()`` raised."""
        if self._main is not None:
            await asyncio.shield(self._main)

    @property
    def events(self) -> List[EventRecord]:
        """Every event the app handled while the client ran, in the order they ended."""
        return self.recorder.events

    async def __aenter__(self) -> TestClient:
        """Run the startup hooks; raise what a failing one raised, or ``RuntimeError`` if the
        app is already run by another client."""
        if self.app in _running_apps or self._main is not None:
            raise RuntimeError(f"{self.app!r} is already running in a TestClient")
        _running_apps.add(self.app)
        started = asyncio.Event()
        app_listen = self.app.listen if self.listen and self.app.runs_listen else None

        async def listen_to_the_test() -> None:
            # main() calls listen() right after the startup hooks: they are done.
            started.set()
            if app_listen is not None:
                await app_listen()

        self._shadow("listen", listen_to_the_test)
        self._shadow("install_signal_handlers", _keep_signal_handlers)
        if self.shutdown_timeout is not None:
            self._shadow("shutdown_timeout", self.shutdown_timeout)
        self.app.add_event_observer(self.recorder)
        self._main = asyncio.get_running_loop().create_task(
            self.app.main(serve_sources=self.listen), name=f"TestClient({self.app!r})"
        )
        ready = asyncio.ensure_future(started.wait())
        await asyncio.wait([self._main, ready], return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            ready.cancel()
            main, self._main = self._main, None
            self._restore()
            main.result()  # raises the startup hook's error
            raise RuntimeError(f"{self.app!r}.main() returned before running listen()")
        return self

    async def __aexit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Shut the app down as production does (errors of shutdown hooks are logged)."""
        main = self._main
        if main is None:
            return
        try:
            await self.app.graceful_shutdown()
            await main
        finally:
            self._main = None
            self._restore()

    async def trigger(
        self,
        path: str,
        *,
        data: EventData | None = None,
        cid: str | None = None,
        timeout: float | None = None,
        scope: Scope | None = None,
    ) -> Any:
        """Run the event ``path`` (in context ``cid``, created if missing, or a new anonymous
        one; a context made here gets ``scope``) and return its handler's result; ``timeout``
        bounds the handler.

        Raises the handler's error (``None`` is returned if an ``on_error`` handler took it),
        :class:`~tiny_listener.EventNotFound` if no route matches, ``RuntimeError`` if the
        client is not running.
        """
        if self._main is None:
            raise RuntimeError("the TestClient is not running: use `async with TestClient(app) as client:`")
        return await self.app.trigger_event(path, cid=cid, timeout=timeout, data=data, scope=scope)

    async def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no event is running, for events that handlers trigger without awaiting.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds.
        """
        await self.recorder.wait_idle(timeout)

    def _shadow(self, name: str, value: Any) -> None:
        """Set an attribute on the app instance, remembering what to put back."""
        previous = self.app.__dict__.get(name, _MISSING)
        if previous is _MISSING and isinstance(getattr(type(self.app), name, None), property):
            previous = getattr(self.app, name)  # a setting kept elsewhere (HTTPListener.port): set it back
        self._shadowed[name] = previous
        setattr(self.app, name, value)

    def _restore(self) -> None:
        for name, previous in self._shadowed.items():
            if previous is _MISSING:
                delattr(self.app, name)
            else:
                setattr(self.app, name, previous)
        self._shadowed.clear()
        self.app.remove_event_observer(self.recorder)
        _running_apps.discard(self.app)


def _keep_signal_handlers() -> None:
    """Stands in for ``Listener.install_signal_handlers``: tests keep their own handlers."""
