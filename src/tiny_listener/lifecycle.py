"""The event lifecycle: every legal state change lives in ``TRANSITIONS``.

    pending ──> running ──> done
       │           ├──────> failed
       ├───────────┴──────> cancelled
       └──────────────────> done

An event is *pending* once created, *running* from the moment its task starts the before-event
hooks, and ends *done* (handler succeeded and the event was marked done, automatically unless
``prevent_auto_done()`` was called), *failed* (an exception, handled by ``on_error`` or not) or
*cancelled* (its task was cancelled). ``done()`` on a pending event (built by hand, or whose
task has not started) ends it done without running its handler, as 1.2 allowed. Ended states
are final.
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet

from .errors import EventAlreadyDone


class EventState(str, enum.Enum):
    """Where an event is in its lifecycle."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


PENDING, RUNNING, DONE, FAILED, CANCELLED = EventState

TRANSITIONS: Dict[EventState, FrozenSet[EventState]] = {
    PENDING: frozenset({RUNNING, DONE, CANCELLED}),
    RUNNING: frozenset({DONE, FAILED, CANCELLED}),
    DONE: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

ENDED: FrozenSet[EventState] = frozenset({DONE, FAILED, CANCELLED})


class EventStateError(EventAlreadyDone):
    """An event was asked to make a move its lifecycle does not allow."""

    def __init__(self, path: str, current: EventState, target: EventState) -> None:
        self.path = path
        self.current = current
        self.target = target
        super().__init__(f"can't move event {path!r} from {current.value} to {target.value}")
