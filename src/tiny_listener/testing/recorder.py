"""Record every event an app handles, for tests: what ran, with what, and how it ended."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Dict, List

from .._types import EventData, PathParams
from ..event import Event
from ..lifecycle import DONE, EventState


@dataclass(frozen=True)
class EventRecord:
    """One event as it ended: its path, handler, params, data, context id, result or error,
    final ``state`` and ``duration`` in seconds (from its task's start to its end)."""

    path: str
    handler: str
    params: PathParams
    data: EventData
    cid: str
    state: EventState
    result: Any
    error: BaseException | None
    duration: float

    @property
    def ok(self) -> bool:
        """True if the handler succeeded and the event is done."""
        return self.state is DONE and self.error is None


class EventRecorder:
    """An event observer (see ``Listener.add_event_observer``) that keeps an
    :class:`EventRecord` per ended event, in the order they ended, and counts the events
    still running so that tests can wait for them with :meth:`wait_idle`."""

    def __init__(self) -> None:
        self.events: List[EventRecord] = []
        self._started: Dict[Event[Any], float] = {}
        self._idle: asyncio.Event | None = None

    def event_started(self, event: Event[Any]) -> None:
        self._started[event] = time.perf_counter()

    def event_ended(self, event: Event[Any]) -> None:
        started = self._started.pop(event, None)
        ended = time.perf_counter()
        self.events.append(
            EventRecord(
                path=event.path,
                handler=event.route.name,
                params=dict(event.params),
                data=event.data,
                cid=event.ctx.cid,
                state=event.state,
                result=event.result,
                error=event.error,
                duration=0.0 if started is None else ended - started,
            )
        )
        if not self._started and self._idle is not None:
            self._idle.set()

    @property
    def in_flight(self) -> int:
        """How many events have started and not ended yet."""
        return len(self._started)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Return once no event is running, including events that handlers or the test
        triggered and whose tasks have not taken their first step yet.

        Raises ``asyncio.TimeoutError`` if events are still running after ``timeout`` seconds.
        """
        await asyncio.wait_for(self._until_idle(), timeout)

    async def _until_idle(self) -> None:
        while True:
            # One loop iteration lets tasks already created take their first step, where
            # their event starts: an event triggered just before this call is waited for.
            await asyncio.sleep(0)
            if not self._started:
                return
            self._idle = asyncio.Event()
            await self._idle.wait()

    def clear(self) -> None:
        """Forget the recorded events (running ones are still counted)."""
        self.events.clear()
