"""What a broker source does with a message, decided without any network code.

Shared by every broker (the one delivery flow is :mod:`tiny_listener.sources.broker`): the
delivery settings they all take (checked here once), how a payload becomes event data and
starts its event (or why it cannot), and what follows a failed delivery (retry after a delay,
or dead-letter once the retries are used up), returned as values (:class:`Retry`,
:class:`DeadLetter`). The reasons a message is dead-lettered and the headers that say so are
named here once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Union

from ._types import EventData, Scope
from .backoff import backoff_delays, retry_delay
from .codecs import Codec, DecodeError
from .errors import EventNotFound, ValidationError

if TYPE_CHECKING:
    from .context import Context
    from .listener import Listener

NO_ROUTE = "no-route"
"""Dead-letter reason: no route matches the message's event path."""

UNDECODABLE = "undecodable"
"""Dead-letter reason: the codec cannot decode the payload."""

HANDLER_FAILED = "handler-failed"
"""Dead-letter reason: the handler failed on every allowed attempt."""

INVALID = "invalid"
"""Dead-letter reason: the event data does not fit the types its handler declares (the event
raised :class:`~tiny_listener.ValidationError`); dead-lettered at once, since a retry would
fail the same way."""

# Headers of the messages a broker listener moves (retry copies, dead letters), named alike on
# every broker so that one tool can read the dead letters of any of them.
EVENT_PATH = "x-event-path"
"""Header: the event path of the message."""

ATTEMPT = "x-attempt"
"""Header: the delivery attempt (1 for the first)."""

LAST_ERROR = "x-last-error"
"""Header: ``repr`` of the handler's last error, cut to ``MAX_ERROR_TEXT`` characters."""

REPLY_TO = "x-reply-to"
"""Header: where the handler's result goes as the reply to a request (brokers whose messages
have no reply address of their own, or whose own one is taken: JetStream's is its ack subject)."""

DEAD_LETTER_REASON = "x-dead-letter-reason"
"""Header of a dead letter: why it was dead-lettered (``NO_ROUTE``, ``UNDECODABLE``, ``INVALID``,
``HANDLER_FAILED``)."""

# Error texts go into headers, which brokers keep in memory: bound them.
MAX_ERROR_TEXT = 1000


def error_text(error: BaseException, *, one_line: bool = False) -> str:
    """Return ``repr(error)`` for a header, shortened to ``MAX_ERROR_TEXT`` characters; with
    ``one_line``, every run of whitespace (line breaks included) becomes one space, for
    brokers whose headers cannot hold line breaks."""
    text = " ".join(repr(error).split()) if one_line else repr(error)
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


class DeliverySettings:
    """The delivery settings every broker source takes, checked in one place and kept as
    plain attributes of the source (and of the broker listeners not yet built on
    :class:`~tiny_listener.sources.broker.BrokerSource`), which call
    :meth:`_set_delivery_settings` from their constructor.

    ``max_in_flight`` messages at most are handled at once; a failed handler is retried
    ``max_retries`` times, after ``retry_backoff`` seconds doubling up to ``max_retry_delay``;
    a lost connection is re-made after ``reconnect_backoff`` seconds doubling up to
    ``max_reconnect_delay``.
    """

    max_in_flight: int
    max_retries: int
    retry_backoff: float
    reconnect_backoff: float
    max_retry_delay: float = 30.0
    max_reconnect_delay: float = 10.0
    # Every broker listener keeps its connection until in-flight messages are settled.
    keeps_connections_while_draining = True

    def _set_delivery_settings(
        self,
        *,
        max_in_flight: int,
        max_retries: int,
        retry_backoff: float,
        reconnect_backoff: float,
        max_retry_delay: float | None = None,
        max_reconnect_delay: float | None = None,
    ) -> None:
        """Check and keep the settings (the two maximums keep their defaults when None).

        Raises ``ValueError`` if ``max_in_flight`` is below 1, ``max_retries`` below 0,
        ``retry_backoff`` or ``max_retry_delay`` negative, ``reconnect_backoff`` or
        ``max_reconnect_delay`` not positive.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
        retry_ceiling = self.max_retry_delay if max_retry_delay is None else max_retry_delay
        reconnect_ceiling = self.max_reconnect_delay if max_reconnect_delay is None else max_reconnect_delay
        for name, value in (("retry_backoff", retry_backoff), ("max_retry_delay", retry_ceiling)):
            if value < 0:
                raise ValueError(f"{name} must be 0 or more seconds, not {value!r}")
        for name, value in (("reconnect_backoff", reconnect_backoff), ("max_reconnect_delay", reconnect_ceiling)):
            if value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.reconnect_backoff = reconnect_backoff
        self.max_retry_delay = retry_ceiling
        self.max_reconnect_delay = reconnect_ceiling

    def _reconnect_delays(self) -> Iterator[float]:
        """Return a fresh series of delays before the reconnect attempts (restarted after every
        successful connection)."""
        return backoff_delays(initial=self.reconnect_backoff, maximum=self.max_reconnect_delay)


def dead_letter_target(dead_letter: str | bool | None, default: str) -> str | None:
    """Return where a broker dead-letters messages, given its ``dead_letter`` argument, which
    means the same on every broker: ``default`` (the broker's own default target) for True, the
    target named for a string, None for False, None or ``""``: such messages are then logged
    at ERROR level and dropped."""
    if dead_letter is True:
        return default
    return dead_letter or None


def payload_to_data(payload: bytes, codec: Codec) -> EventData:
    """Decode ``payload`` into event data: a decoded mapping is the data itself, any other
    value (a list, a number, raw bytes) is carried as ``{"payload": value}``.

    Raises :class:`~tiny_listener.codecs.DecodeError` if the codec cannot decode it.
    """
    decoded = codec.decode(payload)
    if isinstance(decoded, dict):
        return decoded
    return {"payload": decoded}


def data_to_payload(data: object, codec: Codec) -> bytes:
    """Encode event data for publishing and return the bytes; the inverse of
    :func:`payload_to_data`, so ``{"payload": value}`` with a non-mapping ``value`` is sent as
    ``value`` itself. Raises what the codec raises for data it cannot encode."""
    if isinstance(data, dict) and data.keys() == {"payload"} and not isinstance(data["payload"], dict):
        data = data["payload"]
    return codec.encode(data)


@dataclass(frozen=True)
class Undeliverable:
    """A message that cannot become an event: dead-letter it, saying ``reason`` and ``error``."""

    reason: str
    error: Exception


class UndeliverableMessage(Exception):
    """Raised by a broker's message adapter when a message cannot become an event (see
    :meth:`BrokerMessage.event_data <tiny_listener.sources.BrokerMessage.event_data>`): it is
    dead-lettered at once with ``reason`` (a dead-letter reason code); ``str()`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def start_event(
    listener: Listener[Any], path: str, payload: bytes, codec: Codec, scope: Scope, *, log_failures: bool = True
) -> Union[asyncio.Task[Any], Undeliverable]:
    """Decode ``payload`` (see :func:`payload_to_data`) and start the event ``path`` in a new
    anonymous context of ``listener`` holding ``scope``; return the event's task, or an
    :class:`Undeliverable` saying why there is none (``UNDECODABLE``, ``NO_ROUTE``).

    With ``log_failures=False`` the listener does not log the handler's failure (see
    :attr:`Context.log_failures <tiny_listener.Context.log_failures>`): the caller does.
    """
    try:
        data = payload_to_data(payload, codec)
    except DecodeError as exc:
        return Undeliverable(UNDECODABLE, exc)
    return start_decoded_event(listener, path, data, scope, log_failures=log_failures)


def start_decoded_event(
    listener: Listener[Any], path: str, data: EventData, scope: Scope, *, log_failures: bool = True
) -> Union[asyncio.Task[Any], Undeliverable]:
    """Start the event ``path`` carrying ``data`` as :func:`start_event` does, for a message
    decoded already; return its task, or an :class:`Undeliverable` (``NO_ROUTE``)."""
    ctx: Context = listener.new_ctx(scope=scope)
    if not log_failures:
        ctx.log_failures = False
    try:
        return ctx.trigger_event(path, data=data)
    except EventNotFound as exc:
        ctx.drop()  # it ran no event, so nothing would release it
        return Undeliverable(NO_ROUTE, exc)


@dataclass(frozen=True)
class Retry:
    """Deliver the message again after ``delay`` seconds, as attempt number ``attempt``;
    ``error`` is the failure that made it necessary (not compared)."""

    attempt: int
    delay: float
    error: BaseException | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DeadLetter:
    """Give up on the message and dead-letter it, saying ``reason`` and ``error`` (not
    compared)."""

    reason: str
    error: BaseException | None = field(default=None, compare=False)


def is_invalid(error: BaseException | None) -> bool:
    """True if ``error``, what an event's task raised, says that the message's data does not
    validate (:class:`~tiny_listener.ValidationError`): dead-letter it at once with reason
    :data:`INVALID`, and give ``error.errors()`` with it."""
    return isinstance(error, ValidationError)


def after_failure(
    attempts_made: int,
    max_retries: int,
    retry_backoff: float,
    max_retry_delay: float,
    error: BaseException | None = None,
) -> Union[Retry, DeadLetter]:
    """Decide what follows a handler failure (``error``) on delivery number ``attempts_made``
    (1 for the first): a :class:`Retry` while fewer than ``max_retries`` retries were made,
    with a delay growing from ``retry_backoff`` seconds up to ``max_retry_delay``; a
    :class:`DeadLetter` (``HANDLER_FAILED``) afterwards. Both carry ``error``. Data that does
    not validate (see :func:`is_invalid`) is dead-lettered at once, with reason :data:`INVALID`.
    """
    if is_invalid(error):
        return DeadLetter(INVALID, error)
    if attempts_made <= max_retries:
        delay = retry_delay(attempts_made, initial=retry_backoff, maximum=max_retry_delay)
        return Retry(attempts_made + 1, delay, error)
    return DeadLetter(HANDLER_FAILED, error)
