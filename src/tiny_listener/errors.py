"""Every error the core raises. All derive from :class:`ListenerError`.

Each class keeps the names of 1.2 so that ``except EventNotFound`` written for it still works.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, TypedDict, Union


class ListenerError(Exception):
    """Base class of every tiny-listener error."""


class RouteError(ListenerError):
    """A route path cannot be compiled (unknown convertor, bad parameter name)."""


class EventAlreadyExists(ListenerError):
    """A handler with the same name is already registered."""


class EventNotFound(ListenerError):
    """No route matches an event path, or no route has the given name."""


class EventAlreadyDone(ListenerError):
    """An event was asked to move to a state its lifecycle does not allow."""


class ContextNotFound(ListenerError):
    """No context has the given cid."""


class ContextAlreadyExists(ListenerError):
    """A context with the given cid already exists."""


class DuplicateListener(ListenerError):
    """A second listener was started in a thread that already runs one."""


class ListenerNotFound(ListenerError):
    """No listener is running in the current thread."""


class PathParamsError(ListenerError):
    """A handler asks for a path parameter that the matched route does not define."""


class EventDataError(ListenerError):
    """A handler asks for an event data key that the event does not carry."""


class FieldError(TypedDict):
    """One reason event data does not validate, in pydantic's and FastAPI's shape: ``loc`` is
    where (keys and list indexes from the data's root), ``msg`` says what is wrong for a
    person, ``type`` names the kind of error for a program (``"missing"``, ``"int_type"``...)."""

    loc: Tuple[Union[str, int], ...]
    msg: str
    type: str


class ValidationError(EventDataError):
    """The event data does not fit the types its handler declares; raised from the event,
    before the handler runs. :meth:`errors` lists every field error found."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self._errors: List[FieldError] = list(errors)
        super().__init__(self._message())

    def errors(self) -> List[FieldError]:
        """Return the field errors, each ``{"loc": (...), "msg": ..., "type": ...}``."""
        return [FieldError(loc=error["loc"], msg=error["msg"], type=error["type"]) for error in self._errors]

    def _message(self) -> str:
        count = len(self._errors)
        details = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(data)'}: {error['msg']} [type={error['type']}]"
            for error in self._errors
        )
        return f"{count} validation error{'' if count == 1 else 's'}: {details}"


class NoReply(ListenerError):
    """A request got no reply: nobody takes its path (``reason`` says so), or no reply came
    within ``timeout`` seconds."""

    def __init__(self, path: str, *, timeout: float | None = None, reason: str | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.reason = reason
        if reason is not None:
            message = f"no reply to request {path!r}: {reason}"
        else:
            message = f"no reply to request {path!r} within {timeout:g} s"
        super().__init__(message)


class InjectionError(ListenerError, TypeError):
    """A handler parameter cannot be resolved; raised when the handler is registered."""


class EventFailed(ListenerError):
    """A handler, hook or dependency raised a ``BaseException`` that is not an ``Exception``
    (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, a subclass of your own).

    The event failed like any other (logged once, offered to ``on_error``, ``event.error`` is
    the original); awaiting its task raises this error, whose ``__cause__`` and ``error`` are
    the original, because re-raised as it is a ``KeyboardInterrupt`` or ``SystemExit`` would
    stop the event loop and every other event with it.
    """

    def __init__(self, path: str, handler: str, error: BaseException) -> None:
        self.path = path
        self.handler = handler
        self.error = error
        super().__init__(f"event {path!r} failed in handler {handler} with {error!r}")
