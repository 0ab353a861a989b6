"""A source: a transport (an HTTP port, a TCP socket, a broker consumer) hosted by a listener.

A listener hosts any number of sources (:meth:`Listener.add_source`); they share its route
table, hooks, dependencies, contexts and its one lifecycle. Each source reports its state,
which health and readiness checks read. The listener drives every source through the same
steps, in ``Listener._shut_down``:

1. ``serve()`` runs as a task from startup; it takes messages in and triggers events. Shutdown
   cancels it: intake stops (a server stops accepting, a consumer stops fetching) and the
   source's state becomes ``DRAINING``; connections stay open.
2. The listener waits for in-flight events (and drain tasks) up to ``shutdown_timeout``, so
   their replies and acknowledgements can still go out.
3. ``close()`` then closes what is left open (client connections, the broker connection), and
   the state becomes ``STOPPED``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any, Dict

from ..errors import ListenerError

if TYPE_CHECKING:
    from ..listener import Listener

logger = logging.getLogger("tiny_listener")


class SourceState(str, enum.Enum):
    """Where a source is in its life; a string, so that health reports serialise as is."""

    STOPPED = "stopped"
    """Not serving: not started yet, or closed."""
    STARTING = "starting"
    """``serve()`` runs but does not take messages in yet (binding, connecting)."""
    READY = "ready"
    """Taking messages in."""
    RECONNECTING = "reconnecting"
    """The connection was lost (or could not be made); the source is trying again."""
    DRAINING = "draining"
    """Intake stopped at shutdown; in-flight events finish before ``close()``."""


class SourceNotAttached(ListenerError):
    """A source was used before :meth:`Listener.add_source` attached it to a listener."""


class Source:
    """Base class of every source; subclasses implement :meth:`serve` (and :meth:`close` if
    they keep connections open while draining).

    ``name`` identifies the source in health reports and log lines (default: the class name in
    lower case); two sources of one listener must have different names.
    """

    kind: str = "source"
    """What kind of transport this is (``"http"``, ``"redis"``...), for health reports and docs."""

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name if name is not None else type(self).__name__.lower()
        self._listener: Listener[Any] | None = None
        self._state = SourceState.STOPPED
        # Made on first use inside the running loop (Python 3.9 binds an Event to a loop).
        self._state_changed: asyncio.Event | None = None

    # ------------------------------------------------------------------ hosting

    @property
    def listener(self) -> Listener[Any]:
        """The listener hosting this source; raises :class:`SourceNotAttached` before
        :meth:`Listener.add_source`."""
        if self._listener is None:
            raise SourceNotAttached(f"source {self.name!r} is not attached to a listener (see Listener.add_source)")
        return self._listener

    def attach(self, listener: Listener[Any]) -> None:
        """Called by :meth:`Listener.add_source`; registers what the source needs on the
        listener (hooks, a context class). Raises :class:`ListenerError` if the source is
        already attached to another listener."""
        if self._listener is not None and self._listener is not listener:
            raise ListenerError(f"source {self.name!r} is already attached to {self._listener!r}")
        self._listener = listener

    # ------------------------------------------------------------------ the two steps

    async def serve(self) -> None:
        """Take messages in and trigger events on :attr:`listener` until cancelled; set the
        state to ``READY`` once messages flow (and ``RECONNECTING`` while they cannot).
        It may also return early, after handing intake to a server it started."""
        raise NotImplementedError(f"{type(self).__name__} must implement `async def serve(self)`")

    async def close(self) -> None:
        """Close what :meth:`serve` left open for in-flight events (connections); called once
        they finished or shutdown gave up on them. The default has nothing to close."""

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> SourceState:
        """The source's :class:`SourceState`."""
        return self._state

    def set_state(self, state: SourceState) -> None:
        """Move to ``state`` and wake whoever waits in :meth:`wait_state`."""
        if state is self._state:
            return
        self._state = state
        changed = self._state_changed
        if changed is not None:
            # Wake every waiter once; each checks the state it waits for and waits again.
            changed.set()
            self._state_changed = None

    @property
    def ready(self) -> bool:
        """True while the source takes messages in."""
        return self._state is SourceState.READY

    async def wait_state(self, *states: SourceState) -> SourceState:
        """Return the state once it is one of ``states`` (at once if it already is)."""
        while self._state not in states:
            if self._state_changed is None:
                self._state_changed = asyncio.Event()
            await self._state_changed.wait()
        return self._state

    async def wait_ready(self) -> None:
        """Return once the source takes messages in (at once if it does)."""
        await self.wait_state(SourceState.READY)

    def health(self) -> Dict[str, Any]:
        """Return what a health report says of this source: ``{"kind", "state"}``; sources
        add details (the URL, the connections open)."""
        return {"kind": self.kind, "state": self._state.value}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, state={self._state.value!r})"
