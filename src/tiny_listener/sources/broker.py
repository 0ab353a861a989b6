"""The one broker delivery flow: every broker source is a :class:`BrokerSource` that supplies
only what is its own.

The flow (this module) owns, for every broker: the in-flight limit, the source's state
(``STARTING`` -> ``READY`` <-> ``RECONNECTING`` -> ``DRAINING``) with ``wait_connected()`` and
``connected``, the reconnect loop with backoff, the per-message flow and its decisions, the
shutdown drain, and the log lines (:mod:`._broker_log`). The decisions themselves are values
computed without I/O in :mod:`tiny_listener.delivery` (:func:`~tiny_listener.delivery.after_failure`).

What it costs per message, beyond the client library's own work: an event (its context made
only if something asks for it), its handler run by one of the source's worker tasks with no
task nor coroutine of the flow's own per message (see ``_start`` and ``_deliver_one``), the
codec's decoding, and the acknowledgement. The in-flight count is a number, and handlers that
run long are reported in progress by one timer per source, not one per message.

What a broker implements
========================

A subclass of :class:`BrokerSource` sets the class attributes ``kind`` (``"nats"``: the logger
is ``tiny_listener.<kind>``), ``broker`` (``"NATS"``, as log lines name it), ``url_schemes``
and ``url_form`` (the URL is checked against them when the source is made), and optionally
``client_loggers`` (third-party loggers that repeat what the flow says), ``redelivers_retries``,
``receive_in_batches`` and ``progress_interval``. It implements:

``connection_errors() -> tuple of exception types``
    The errors that mean "the connection is gone or cannot be made" (the client library may
    be imported here). They make the flow reconnect, and are what a failed acknowledgement
    may raise.
``async connect() -> None``
    Open the connection and make ready to receive (declare queues, bind a consumer). Raise
    one of ``connection_errors()`` if it cannot; the flow logs it, waits and tries again.
``async receive(max_messages) -> Sequence[BrokerMessage]``
    Return up to ``max_messages`` received messages, waiting a bounded time (a second or so)
    for the first and returning ``[]`` if none came. Raise one of ``connection_errors()`` when
    the connection is lost. At shutdown the flow lets the call under way finish and hands back
    (``release(0)``) what it brought, so it must not wait unbounded.
``async disconnect() -> None``
    Close the connection, if any (it may be half made, or already lost); called after a loss
    and by :meth:`close`. Must not raise for a connection that is already gone.
``async stop_receiving() -> None`` (optional)
    Intake stops at shutdown, the connection stays open: stop the broker from sending more
    (cancel a push consumer) and ``release(0)`` what was received but not yet returned by
    ``receive``. Pull consumers have nothing to do (the default).
``next_in_turn(settled) -> BrokerMessage | None`` (optional)
    A message whose turn came when ``settled`` was settled, which the flow delivers next in
    the same task, as if received; None (the default) when there is none. Brokers that keep
    messages in order (Kafka: one record of a partition at a time) hand over the next record
    of the partition this way instead of through ``receive``, which saves a wake-up and a task
    per message. Called only while intake runs.
``intake() -> str``
    What the source consumes, for log lines: ``"stream 'ORDERS' as 'billing'"``.
``connection_lost(error)`` (to call, not to implement)
    For a client that learns of a lost connection by a callback: the flow stops consuming at
    once and reconnects, also while every slot is taken (``receive`` is not called then, so
    it would only see the loss once a handler ends).
``await deliver_received(messages)`` (to call, not to implement)
    For a broker that cannot hand a received message back (MQTT): start them as slots free
    up, from ``stop_receiving`` (in a drained task) rather than release them.
``default_dead_letter_target() -> str``
    Where ``dead_letter=True`` sends dead letters (``"deadletter.<stream>"``).

and may override:

``dead_letter_target_for(message) -> str | None``
    Where this message's dead letter goes (default: ``dead_letter_target``, the same for every
    message; Redis: one dead-letter stream per stream read).
``async wait_before_retry(message, delay) -> bool``
    With ``redelivers_retries = False``: wait before the event runs again (default: sleep
    ``delay``); return False to hand the message back (``release(0)``) instead of retrying,
    as Redis does once shutdown has begun.
``ordering_key(message) -> Hashable | None``
    Only while the attribute ``ordered`` is True: messages with the same key are handled one
    at a time, in the order received, retries included (Redis's ``order_by``); None: this
    message runs unordered. It must not raise.

and a message adapter, a subclass of :class:`BrokerMessage` per broker, whose attributes
``path``, ``payload`` (bytes), ``attempt`` (1 for the first delivery) and ``message_id`` (for
logs) are set by its constructor, with:

``scope() -> dict``                     what handlers see in ``ctx.scope`` (``"message"``, ``"attempt"``)
``event_data(codec) -> dict``           the event data (default: ``payload`` decoded by the codec);
                                        raise ``DecodeError`` or
                                        :class:`~tiny_listener.delivery.UndeliverableMessage`
                                        to have the message dead-lettered at once
``ack()``                               the event succeeded: settle the message (an ``async def``,
                                        or a plain method returning None when settled at once)
``async retry(delay, error)``           the event failed with ``error`` and will be retried: have the
                                        broker deliver it again after ``delay`` seconds as attempt
                                        ``attempt + 1`` (only with ``redelivers_retries = True``)
``async dead_letter(target, reason, error)``  store a copy at ``target`` saying why (the
                                        original is then settled with ``drop()``); it may return
                                        where the copy went when ``target`` is a template
``async drop()``                        settle the message for good without handling it
``async release(delay)``                hand the message back unhandled, to be delivered again
                                        (to any consumer) after ``delay`` seconds (0: at once)
``async in_progress()``                 tell the broker the message is still being handled
                                        (only with ``progress_interval`` set)
``reply_address() -> str | None``       where the message asks its result to be sent (a request),
                                        or None (the default)
``async reply(payload)``                send ``payload`` (the encoded result) to ``reply_address()``

A broker that can send messages also implements ``async publish(path, data)`` (wait for the
broker's confirmation), ``async request(path, data, timeout=)`` (send a request and return the
decoded reply, raising :class:`~tiny_listener.NoReply`) and ``async open_publisher()`` (connect
for publishing only, without consuming: ``tiny-listener publish``).

The flow for one message
========================

1. ``message.event_data(codec)`` decodes the payload and the event ``path`` starts; a payload
   the codec cannot decode (``UNDECODABLE``), a message the adapter refuses (its reason) or a
   path no route matches (``NO_ROUTE``) is dead-lettered at once.
2. The event succeeds (or an ``on_error`` handler takes its error): ``ack()``.
   Its result, if the message is a request (``reply_address()``), is sent with
   ``reply(payload)``; if the route declares ``publish_to`` and the result is not None, it is
   published there with ``publish()``. Both happen before ``ack()``: a crash in between
   redelivers the message, the result is not lost (at least once). A reply or publication that
   fails is a failure of the event (step 3).
3. The handler fails: ``after_failure`` decides. ``Retry``: one WARNING line, then
   ``retry(delay, error)`` (``redelivers_retries``: the broker brings it back, NATS naks with a delay)
   or, for brokers that retry in process (``redelivers_retries = False``), the flow waits
   ``delay`` holding the message and its slot and runs the event again (unless
   ``wait_before_retry`` says to hand it back). ``DeadLetter``: one
   ERROR line with the handler's traceback, then ``dead_letter(target, ...)`` and ``drop()``.
   With ``dead_letter=False`` (or None) the message is logged at ERROR level and ``drop()``-ed.
   If the dead letter cannot be stored, the message is ``release(max_retry_delay)``-d.
4. Shutdown cancels the event (past ``shutdown_timeout``): ``release(0)``, another consumer
   gets it at once.

A settling call (``ack``, ``retry``...) that fails with a connection error is logged as a
WARNING: the broker redelivers the message.

Settings
========

The same names and meanings on every broker: ``max_in_flight`` (messages handled at once),
``max_retries`` (retries after the first attempt), ``retry_backoff`` (seconds before the first
retry, doubling up to ``max_retry_delay``), ``reconnect_backoff`` (seconds before the first
reconnect attempt, doubling up to ``max_reconnect_delay``), ``dead_letter`` (True: the broker's
default target; a string: that target; False or None: log at ERROR level and drop) and
``codec`` (payload bytes <-> event data, :class:`~tiny_listener.codecs.JsonCodec` by default).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextvars import Context, copy_context
from typing import Any, Awaitable, ClassVar, Deque, Dict, Hashable, List, Sequence, Tuple, Type
from urllib.parse import urlsplit

from .._types import EventData, PathParams, Scope
from ..codecs import Codec, DecodeError, JsonCodec
from ..delivery import (
    NO_ROUTE,
    UNDECODABLE,
    DeadLetter,
    DeliverySettings,
    UndeliverableMessage,
    after_failure,
    data_to_payload,
    dead_letter_target,
    payload_to_data,
)
from ..destinations import result_data
from ..errors import EventNotFound, ListenerError
from ..routing import Route
from ._broker_log import BrokerLog, quiet_client_loggers
from ._ordering import KeyedLocks
from .base import Source, SourceState


class NotConnected(ListenerError):
    """The source has no open connection to its broker (not started yet, reconnecting, or
    stopped)."""


class BrokerMessage:
    """One received message, as the delivery flow sees it; each broker subclasses it (see the
    module's documentation for what each method must do).

    ``path`` is the event path, ``payload`` the bytes the codec decodes, ``attempt`` the
    delivery number (1 for the first), ``message_id`` what log lines call the message (a
    string, or a number, formatted only when a line is logged).
    """

    __slots__ = ("attempt", "message_id", "path", "payload")

    replies: ClassVar[bool] = False
    """Whether the class overrides :meth:`reply_address` (set for every subclass): the flow
    asks a message for its reply address only then, not for every message of every broker."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.replies = cls.reply_address is not BrokerMessage.reply_address

    def __init__(self, path: str, payload: bytes, *, attempt: int = 1, message_id: str | int = "") -> None:
        self.path = path
        self.payload = payload
        self.attempt = attempt
        self.message_id = message_id

    def scope(self) -> Scope:
        """Return the scope of the message's event context (``{"attempt": n}`` by default;
        brokers add ``"message"``, their client's message object)."""
        return {"attempt": self.attempt}

    def event_data(self, codec: Codec) -> EventData:
        """Return the event data: ``payload`` decoded by ``codec`` by default.

        Raises :class:`~tiny_listener.codecs.DecodeError` if it cannot be decoded, and
        :class:`~tiny_listener.delivery.UndeliverableMessage` for a message the broker refuses
        to run (the flow dead-letters both at once).
        """
        return payload_to_data(self.payload, codec)

    def ack(self) -> Awaitable[None] | None:
        """The event succeeded: settle the message. Return what the flow awaits for it (an
        ``async def ack`` does), or None for a message settled at once (Kafka's: a finished
        offset, committed later with a batch)."""
        raise NotImplementedError(f"{type(self).__name__} must implement ack()")

    async def retry(self, delay: float, error: BaseException) -> None:
        """The event failed with ``error`` and is retried: have the broker deliver the message
        again after ``delay`` seconds, as attempt ``attempt + 1``."""
        raise NotImplementedError(f"{type(self).__name__} must implement retry() (or retry in process)")

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> str | None:
        """Store a copy of the message at ``target`` saying ``reason`` and ``error``; the flow
        settles the original with :meth:`drop` once this returned. Return where the copy went
        if that is not ``target`` itself (a broker whose target is a template, as Kafka's
        ``{topic}.dead``), for the log line; None otherwise."""
        raise NotImplementedError(f"{type(self).__name__} must implement dead_letter()")

    async def drop(self) -> None:
        """Settle the message for good without handling it (dead-lettered, or dropped); by
        default, as :meth:`ack` does."""
        settling = self.ack()
        if settling is not None:
            await settling

    async def release(self, delay: float = 0.0) -> None:
        """Hand the message back unhandled, to be delivered again after ``delay`` seconds."""
        raise NotImplementedError(f"{type(self).__name__} must implement release()")

    async def in_progress(self) -> None:
        """Tell the broker the message is still being handled (see ``progress_interval``)."""

    def reply_address(self) -> str | None:
        """Return where the message asks its handler's result to be sent, or None (not a
        request; the default)."""
        return None

    async def reply(self, payload: bytes) -> None:
        """Send ``payload``, the encoded result of the message's handler, to
        :meth:`reply_address`."""
        raise NotImplementedError(f"{type(self).__name__} must implement reply()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, attempt={self.attempt}, id={self.message_id!r})"


def safe_url(url: str) -> str:
    """Return ``url`` without its password, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class BrokerSource(DeliverySettings, Source):
    """A source consuming from a message broker through the one delivery flow; see the module
    documentation for what a broker implements and what the flow does. The settings are the
    attributes of the same names."""

    kind = "broker"
    broker = "broker"
    """How log lines and errors name the broker ("NATS", "RabbitMQ")."""
    url_schemes: Tuple[str, ...] = ()
    """The URL schemes the broker's client takes; another one is a ``ValueError``."""
    url_form = ""
    """The expected form of the URL, for errors: ``"nats://host[:port]"``."""
    client_loggers: Tuple[str, ...] = ()
    """Third-party loggers that repeat what the flow says (a lost connection, again): their
    records are demoted to DEBUG while ``quiet_client_logs`` is True."""
    quiet_client_logs = True
    """Set it to False (on the class or the source, before it starts) to keep the client
    library's own log records at their levels."""
    redelivers_retries = True
    """True: a retry is handed to the broker (``message.retry(delay, error)``), which delivers the
    message again. False: the flow runs the event again in this process after the delay."""
    receive_in_batches = True
    """True: receive again once half the slots are free (a round trip per batch, not per
    message); False: as soon as one is."""
    progress_interval: float | None = None
    """Seconds between ``message.in_progress()`` calls while a handler runs; None: never."""
    ordered = False
    """True: the flow asks :meth:`ordering_key` for every message and handles the messages of
    one key one at a time, in the order received."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        codec: Codec | None = None,
        max_in_flight: int = 32,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        """Raises ``ValueError`` for a URL that is malformed or of another scheme than the
        broker's, and for settings out of range."""
        super().__init__(name=name if name is not None else self.kind)
        self._set_delivery_settings(
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            reconnect_backoff=reconnect_backoff,
            max_retry_delay=max_retry_delay,
            max_reconnect_delay=max_reconnect_delay,
        )
        self.url = self.check_url(url)
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.dead_letter = dead_letter
        self.log = BrokerLog(logging.getLogger(f"tiny_listener.{self.kind}"), self.broker, safe_url(url))
        self._in_flight = 0  # messages received and not settled yet: each holds a slot
        # Set when a slot frees and no more than _wake_intake_at slots are taken (-1: intake
        # is not waiting), so that a settled message costs no call while intake runs.
        self._slot_freed: asyncio.Event | None = None
        self._wake_intake_at = -1
        # The workers and their queue: see _start.
        self._received: Deque[BrokerMessage] = deque()
        self._workers = 0
        self._idle: List[Tuple[asyncio.Task[None], asyncio.Future[None]]] = []
        self._woken: asyncio.Task[None] | None = None
        self._worker_context = copy_context()  # set again by serve()
        # Messages whose handler runs, with the tick of _progress_timer at which to report them
        # in progress next (see progress_interval and _report_progress).
        self._progress_due: Dict[BrokerMessage, int] = {}
        self._progress_tick = 0
        self._progress_timer: asyncio.TimerHandle | None = None
        self._errors: Tuple[Type[BaseException], ...] = (OSError, NotConnected)
        self._lost: BaseException | None = None  # set by connection_lost()
        self._connection_open = False
        self._task_name = f"{self.name} worker"
        self._key_locks = KeyedLocks()

    # ------------------------------------------------------------------ what a broker supplies

    def connection_errors(self) -> Tuple[Type[BaseException], ...]:
        """Return the exception types that mean the connection is lost or cannot be made."""
        return (OSError, asyncio.TimeoutError)

    async def connect(self) -> None:
        """Open the connection and make ready to receive; see the module documentation."""
        raise NotImplementedError(f"{type(self).__name__} must implement connect()")

    async def receive(self, max_messages: int) -> Sequence[BrokerMessage]:
        """Return up to ``max_messages`` messages, waiting a bounded time; see the module
        documentation."""
        raise NotImplementedError(f"{type(self).__name__} must implement receive()")

    async def disconnect(self) -> None:
        """Close the connection, if any; see the module documentation."""
        raise NotImplementedError(f"{type(self).__name__} must implement disconnect()")

    async def stop_receiving(self) -> None:
        """Intake stops at shutdown: stop the broker from sending more and release what was
        received but not returned by :meth:`receive` yet (nothing to do for a pull consumer)."""

    def intake(self) -> str:
        """Say what the source consumes, for log lines."""
        return self.name

    def next_in_turn(self, settled: BrokerMessage) -> BrokerMessage | None:
        """Return the message to deliver right after ``settled``, in the same task; see the
        module documentation. None by default."""
        return None

    def default_dead_letter_target(self) -> str:
        """Return where ``dead_letter=True`` sends dead letters."""
        raise NotImplementedError(f"{type(self).__name__} must implement default_dead_letter_target()")

    def why_cancelled(self, error: BaseException | None) -> str | None:
        """If ``error``, which stopped consuming (None: the connection closed), says that the
        broker (still reachable) cancelled the intake, say why in a few words (logged instead
        of the outage line); None for an outage. None by default."""
        return None

    def connection_lost(self, error: BaseException) -> None:
        """Say that the connection is lost (``error``, one of ``connection_errors()``): the
        flow stops consuming and reconnects at once, even while every slot is taken."""
        self._lost = error
        if self._slot_freed is not None:
            self._slot_freed.set()

    async def deliver_received(self, messages: Sequence[BrokerMessage]) -> None:
        """Start ``messages`` (received, not started) as slots free up, ``max_in_flight`` at most
        at once; for a broker that cannot hand them back at shutdown."""
        for message in messages:
            while self._in_flight >= self.max_in_flight:
                await self._slots_taken_at_most(self.max_in_flight - 1)
            self._start((message,))

    async def _slots_taken_at_most(self, taken: int) -> None:
        """Wait until no more than ``taken`` slots are taken (or the connection is lost)."""
        slot_freed = self._slot_freed = self._slot_freed or asyncio.Event()
        slot_freed.clear()
        self._wake_intake_at = taken
        try:
            await slot_freed.wait()
        finally:
            self._wake_intake_at = -1

    async def publish(self, path: str, data: Any = None) -> Any:
        """Publish an event ``path`` with ``data`` encoded by the codec and return once the
        broker confirmed it (brokers that can publish implement it)."""
        raise NotImplementedError(f"{self.broker} source {self.name!r} cannot publish")

    async def request(self, path: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send ``data`` to ``path`` as a request and return the reply, decoded by the codec
        (brokers with request/reply implement it). Raises :class:`~tiny_listener.NoReply` when
        nobody takes ``path`` or no reply comes within ``timeout`` seconds."""
        raise NotImplementedError(f"{self.broker} source {self.name!r} cannot send requests")

    async def open_publisher(self) -> None:
        """Connect for :meth:`publish` and :meth:`request` only, without consuming (what
        ``tiny-listener publish`` does); :meth:`close` closes the connection."""
        raise NotImplementedError(f"{self.broker} source {self.name!r} cannot publish")

    @property
    def can_publish(self) -> bool:
        """True if the broker implements :meth:`publish` and :meth:`open_publisher`."""
        cls = type(self)
        return cls.publish is not BrokerSource.publish and cls.open_publisher is not BrokerSource.open_publisher

    @property
    def can_request(self) -> bool:
        """True if the broker implements :meth:`request`."""
        return type(self).request is not BrokerSource.request

    async def wait_before_retry(self, message: BrokerMessage, delay: float) -> bool:
        """Wait ``delay`` seconds before retrying ``message`` in process (with
        ``redelivers_retries = False``); return True to retry, False to hand the message back
        (``release(0)``) instead."""
        await asyncio.sleep(delay)
        return True

    def dead_letter_target_for(self, message: BrokerMessage) -> str | None:
        """Return where ``message`` is dead-lettered (None: logged and dropped); by default
        :attr:`dead_letter_target`, the same for every message."""
        return self.dead_letter_target

    def ordering_key(self, message: BrokerMessage) -> Hashable | None:
        """With :attr:`ordered`: return the key of ``message`` (messages of one key are handled
        one at a time, in the order received), or None to handle it unordered."""
        return None

    # ------------------------------------------------------------------ public

    def _check_scheme(self, url: str, scheme: str) -> None:
        """Raise ``ValueError`` naming ``url`` and ``url_form`` unless ``scheme`` (``url``'s)
        is one of ``url_schemes``."""
        if scheme in self.url_schemes:
            return
        # Without "://" urlsplit's scheme depends on the Python version ('' or '127.0.0.1' for
        # "127.0.0.1:6379"): say what is missing instead.
        found = f"scheme {scheme!r}" if "://" in url else "no scheme"
        raise ValueError(f"{self.broker} URL {safe_url(url)!r} has {found}: expected {self.url_form}")

    def check_url(self, url: str) -> str:
        """Return ``url`` if its scheme is one of ``url_schemes`` and it names a host (and a
        valid port, if any); raise ``ValueError`` naming the URL and ``url_form`` if not."""
        shown = safe_url(url)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"malformed {self.broker} URL {shown!r} ({exc}): expected {self.url_form}") from None
        self._check_scheme(url, parts.scheme)
        if not parts.hostname:
            raise ValueError(f"{self.broker} URL {shown!r} names no host: expected {self.url_form}")
        return url

    @property
    def dead_letter_target(self) -> str | None:
        """Where dead letters go (see ``dead_letter``); None: they are logged and dropped."""
        return dead_letter_target(self.dead_letter, self.default_dead_letter_target())

    @property
    def connected(self) -> bool:
        """True while the source consumes (its state is ``READY``)."""
        return self.ready

    async def wait_connected(self) -> None:
        """Return once the source consumes (at once if it does)."""
        await self.wait_ready()

    @property
    def in_flight(self) -> int:
        """How many received messages are being handled or settled."""
        return self._in_flight

    def health(self) -> Dict[str, Any]:
        """``{"kind", "state", "url", "in_flight"}``, the URL without its password."""
        return {**super().health(), "url": self.log.url, "in_flight": self._in_flight}

    # ------------------------------------------------------------------ connection

    async def serve(self) -> None:
        """Connect, receive and start messages; reconnect with backoff whenever the connection
        is lost or cannot be made. Runs until cancelled at shutdown; the connection is left
        open for the in-flight messages, :meth:`close` closes it."""
        self._errors = (*self.connection_errors(), NotConnected)
        self._worker_context = copy_context()
        if self.quiet_client_logs:
            quiet_client_loggers(self.client_loggers)
        delays = self._reconnect_delays()
        connected_before = False
        while True:
            self._lost = None
            try:
                await self.connect()
            except self._errors as exc:
                delay = next(delays)
                self.set_state(SourceState.RECONNECTING)
                self.log.cannot_connect(exc, delay)
                await self.disconnect()
                await asyncio.sleep(delay)
                continue
            self._connection_open = True
            delays = self._reconnect_delays()
            self.set_state(SourceState.READY)
            if connected_before:
                self.log.reconnected(self.intake())
            else:
                self.log.connected(self.intake(), self.max_in_flight)
            connected_before = True
            reason: BaseException | None = None
            try:
                await self._consume()
            except self._errors as exc:
                reason = exc
            self.set_state(SourceState.RECONNECTING)
            delay = next(delays)
            why = self.why_cancelled(reason)
            if why is None:
                self.log.lost(reason, self._in_flight, delay)
            else:
                self.log.cancelled(self.intake(), reason, why, self._in_flight, delay)
            self._connection_open = False
            await self.disconnect()
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Close the connection: the in-flight messages were settled (or given up) by now;
        messages received and not started are handed back first."""
        try:
            if self._connection_open:
                await self._hand_back_queued()
            await self.disconnect()
        finally:
            if self._connection_open:
                self._connection_open = False
                self.log.disconnected()

    async def _consume(self) -> None:
        """Receive while there are free slots and start each message, until the connection
        is lost (a connection error) or intake stops (cancelled)."""
        limit = self.max_in_flight
        refill_at = max(1, limit // 2) if self.receive_in_batches else 1
        self._slot_freed = asyncio.Event()
        start = self._start
        receiving: asyncio.Future[Sequence[BrokerMessage]] | None = None
        try:
            while True:
                if self._lost is not None:
                    raise self._lost
                free = limit - self._in_flight
                if free < refill_at:
                    await self._slots_taken_at_most(limit - refill_at)
                    continue
                receiving = asyncio.ensure_future(self.receive(free))
                messages = await asyncio.shield(receiving)
                receiving = None
                if messages:
                    start(messages)
        except asyncio.CancelledError:
            await self._stop_intake(receiving)
            raise

    async def _stop_intake(self, receiving: asyncio.Future[Sequence[BrokerMessage]] | None) -> None:
        """Intake stops at shutdown. A receive under way is let end (it is bounded) rather
        than leave a request with the broker that would take messages to a connection about to
        close; what it brought is released so that other consumers get it at once. Then the
        broker is told to stop sending (``stop_receiving``)."""
        messages: Sequence[BrokerMessage] = ()
        if receiving is not None:
            try:
                messages = await receiving
            except Exception:  # nothing came, or the connection is gone: nothing to hand back
                messages = ()
        for message in messages:
            await self._settle(message, message.release(0.0), "hand back")
        if messages:
            self.log.handed_back(len(messages))
        try:
            await self.stop_receiving()
        except self._errors as exc:  # the connection is gone: the broker stopped sending anyway
            self.log.logger.debug("could not stop receiving: %r", exc)

    # ------------------------------------------------------------------ one message

    # Received messages wait in ``_received`` for a worker: a task of the source that delivers
    # one message after another, as long as there are any, and sleeps when there are none.
    # Running each message in a task of its own would cost a task, a loop step and a done
    # callback per message; a worker whose handlers do not wait for anything delivers a whole
    # received batch in one step, as a plain consuming loop would. Concurrency grows only when
    # a handler waits: one worker at a time is on its way to the queue (``_woken``), and when
    # it takes a message while more wait, it wakes the next one, which runs as soon as a
    # handler lets the loop go. There are ``max_in_flight`` workers at most (made as needed),
    # so that many messages are handled at once at most.
    #
    # A worker is a background task of the listener, counted as a drain task while it has
    # work (OwnedTasks.mark_busy): shutdown waits for the messages it holds and the ones
    # queued, then cancels the workers; close() hands back whatever is still queued.

    def _start(self, messages: Sequence[BrokerMessage]) -> None:
        """Queue ``messages`` for the workers, each taking a slot; send one worker to them."""
        self._in_flight += len(messages)
        self._received.extend(messages)
        if self._woken is None:
            self._wake_worker()

    def _wake_worker(self) -> None:
        """Send one worker to the queue: an idle one (the last to go idle: its frames are
        warm), or a new one while there are fewer than ``max_in_flight``."""
        tasks = self.listener._tasks
        if self._idle:
            worker, waiter = self._idle.pop()
            waiter.set_result(None)
        elif self._workers < self.max_in_flight:
            # In a copy of the context serve() started with, not of the running task's: a
            # retiring worker (see _retire) may be the one asking.
            worker = tasks.spawn(self._work(), self._task_name, False, self._worker_context, _event_running_in)
            self._workers += 1
            worker.add_done_callback(self._worker_ended)
        else:
            return  # every worker is busy: each goes back to the queue before it rests
        self._woken = worker
        tasks.mark_busy(worker)

    def _worker_ended(self, worker: asyncio.Task[None]) -> None:
        # Cancelled at shutdown (maybe before its first step, or after it was woken).
        self._workers -= 1
        if self._woken is worker:
            self._woken = None
        self._idle = [(task, waiter) for task, waiter in self._idle if task is not worker]

    async def _work(self) -> None:
        """A worker: deliver queued messages one after another, sleep when there are none."""
        worker = asyncio.current_task()
        assert worker is not None
        queue = self._received
        tasks = self.listener._tasks
        loop = asyncio.get_running_loop()
        # The one path most messages take: no ordering, no next message handed over.
        plain = not self.ordered and type(self).next_in_turn is BrokerSource.next_in_turn
        # Context variables as the worker started: a handler that sets one must not hand its
        # value to the next message's handler, as it would not with a task per message.
        clean = copy_context()
        while True:
            if self._woken is worker:
                self._woken = None
            while queue:
                message = queue.popleft()
                if queue and self._woken is None:
                    self._wake_worker()  # runs if this worker's handler waits for something
                if plain:
                    # Delivers the messages queued meanwhile too, in this same call.
                    if not await self._deliver_one(message, worker, clean):
                        self._retire(worker)
                        return
                    continue
                try:
                    await self._deliver(message, worker)
                except Exception:  # a bug in a broker's adapter: the worker goes on
                    self._delivery_failed(message)
                finally:
                    self._slot_free()
                if copy_context() != clean:  # O(1) unless a handler set a context variable
                    self._retire(worker)
                    return
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle.append((worker, waiter))
            tasks.mark_idle(worker)
            await waiter

    def _delivery_failed(self, message: BrokerMessage) -> None:
        self.log.logger.exception("%s message %s: delivery failed", self.broker, message.message_id)

    def _slot_free(self) -> None:
        """A message taken from the queue is settled (or handed back): its slot is free."""
        self._in_flight -= 1
        if self._in_flight <= self._wake_intake_at:
            self._wake_intake_at = -1  # set once: those settled before the intake runs need not set it again
            self._slot_freed.set()  # type: ignore[union-attr]  # set by whoever waits

    def _retire(self, worker: asyncio.Task[None]) -> None:
        """End ``worker`` early (its context variables were changed by a handler): the next
        message goes to another worker, which starts with the context of the source."""
        worker.remove_done_callback(self._worker_ended)
        self._worker_ended(worker)
        self.listener._tasks.mark_idle(worker)
        if self._received and self._woken is None:
            self._wake_worker()

    async def _deliver(self, message: BrokerMessage, worker: asyncio.Task[None]) -> None:
        """Deliver ``message`` (after the earlier ones of its key, with :attr:`ordered`), then,
        while intake runs, each message :meth:`next_in_turn` hands over, in this same task
        (which keeps its one in-flight slot)."""
        if self.ordered:
            # The key is taken before the first await: messages of one key queue up in the
            # order they were taken from the queue, which is the order received.
            key = self.ordering_key(message)
            if key is not None:
                its_turn = False
                try:
                    async with self._key_locks.hold(key):
                        its_turn = True
                        await self._deliver_one(message, worker, None)
                except asyncio.CancelledError:
                    if not its_turn:  # shutdown gave up while it waited for its turn
                        await self._settle(message, message.release(0.0), "hand back")
                    raise
                return
        await self._deliver_one(message, worker, None)

    async def _hand_back_queued(self) -> None:
        """Hand back the messages still queued (the workers were cancelled at shutdown)."""
        count = len(self._received)
        while self._received:
            message = self._received.popleft()
            self._in_flight -= 1
            await self._settle(message, message.release(0.0), "hand back")
        if count:
            self.log.handed_back(count)

    async def _deliver_one(
        self, message: BrokerMessage, worker: asyncio.Task[None], clean: Context | None
    ) -> bool:
        """Run the message's event in ``worker`` (the running task) and settle the message
        (see the module documentation), then the next one, in this same call (a coroutine
        per message would cost a frame and a step of delegation each):

        - on the plain path (``clean``, the context variables the worker started with), the
          next queued message, while there are any, doing for each what :meth:`_work` does;
          returns False if the worker must retire (a handler set a context variable);
        - else each message :meth:`next_in_turn` hands over while intake runs (which keeps
          this message's slot); returns True.
        """
        listener = self.listener
        queue = self._received
        codec = self.codec
        ready = SourceState.READY
        while True:  # each message
            try:
                while True:  # each attempt at it
                    try:
                        data = message.event_data(codec)
                        path = message.path
                        # Read per message: ``listener.routes = ...`` replaces the table.
                        routes = listener._route_table
                        route, params = routes.match(path)
                        event, running = listener._event_here(worker, route, params, path, data, message)
                    except DecodeError as exc:
                        await self._give_up(message, UNDECODABLE, exc)
                        break
                    except UndeliverableMessage as exc:
                        await self._give_up(message, exc.reason, exc)
                        break
                    except EventNotFound as exc:
                        await self._give_up(message, NO_ROUTE, exc)
                        break
                    try:
                        try:
                            interval = self.progress_interval
                            if interval is None:
                                result = await running
                            else:
                                # Reported in progress while it runs (see _report_progress): due after
                                # 3 ticks of half an interval, so between 1 and 1.5 intervals from now.
                                progressing = self._progress_due
                                progressing[message] = self._progress_tick + 3
                                if self._progress_timer is None:
                                    self._progress_timer = asyncio.get_running_loop().call_later(
                                        interval / 2, self._report_progress, interval
                                    )
                                try:
                                    result = await running
                                finally:
                                    del progressing[message]
                        except BaseException as exc:
                            if event is None:  # the handler ran without one: made now, for on_error handlers
                                event = listener._source_event(worker, route, params, path, data, message)
                            # Ends the event; raises again unless an on_error handler took the error.
                            await listener._event_here_failed(event, exc)
                            result = None
                        else:
                            if event is not None:
                                listener._event_here_done(event, result)
                        if routes.publishes or (message.replies and message.reply_address() is not None):
                            await self._send_result(message, result, route, params)
                    except asyncio.CancelledError:
                        # Shutdown gave up on it: hand it back now, not when the broker notices.
                        await self._settle(message, message.release(0.0), "hand back")
                        raise
                    except Exception as exc:
                        step = after_failure(
                            message.attempt, self.max_retries, self.retry_backoff, self.max_retry_delay, exc
                        )
                        if isinstance(step, DeadLetter):
                            await self._give_up(message, step.reason, exc)
                            break
                        self.log.retrying(message, exc, self.max_retries + 1, step.delay)
                        if self.redelivers_retries:
                            await self._settle(message, message.retry(step.delay, exc), "retry")
                            break
                        try:
                            retrying = await self.wait_before_retry(message, step.delay)
                        except asyncio.CancelledError:
                            await self._settle(message, message.release(0.0), "hand back")
                            raise
                        if not retrying:
                            await self._settle(message, message.release(0.0), "hand back")
                            break
                        message.attempt = step.attempt
                        continue
                    try:  # _settle(), inlined: this is the per-message path
                        settling = message.ack()
                        if settling is not None:
                            await settling
                    except self._errors as exc:
                        self.log.not_settled(message, "acknowledge", exc)
                    break
            except Exception:  # a bug in a broker's adapter: the worker goes on
                self._delivery_failed(message)
                if clean is None:
                    return True  # in turn: what follows stays for intake to take
            finally:
                if clean is not None:
                    # _slot_free(), inlined: this is the per-message path.
                    self._in_flight -= 1
                    if self._in_flight <= self._wake_intake_at:
                        self._wake_intake_at = -1
                        self._slot_freed.set()  # type: ignore[union-attr]  # set by whoever waits
            if clean is not None:
                if copy_context() != clean:  # O(1) unless a handler set a context variable
                    return False
                if not queue:
                    return True
                message = queue.popleft()
                if queue and self._woken is None:
                    self._wake_worker()  # runs if this worker's handler waits for something
                continue
            # Settled (or handed back): the next message in turn, if any.
            if self._state is not ready:
                return True
            following = self.next_in_turn(message)
            if following is None:
                return True
            message = following

    async def _send_result(self, message: BrokerMessage, result: Any, route: Route, params: PathParams) -> None:
        """Reply to a request with the handler's ``result``, and publish a result that is
        not None to the ``publish_to`` destination of ``route`` (which ran, with ``params``)."""
        address = message.reply_address()
        if address is not None:
            await message.reply(data_to_payload(result_data(result), self.codec))
        if result is None:
            return
        if route.publish_to is not None:
            await self.publish(route.publish_to.build(params), result_data(result))

    def _report_progress(self, interval: float) -> None:
        # One timer for the source, ticking every half interval while handlers run, rather
        # than one per message: most handlers end long before a report is due. Due times are
        # counted in ticks, not read from the clock per message; a message is reported between
        # one and one and a half intervals after it started or was last reported.
        self._progress_timer = None
        self._progress_tick = tick = self._progress_tick + 1
        progressing = self._progress_due
        if not progressing:
            return
        for message, due in progressing.items():
            if due <= tick:
                progressing[message] = tick + 2
                self.listener.spawn(
                    self._settle(message, message.in_progress(), "extend"), name=f"{self.name} in-progress"
                )
        self._progress_timer = asyncio.get_running_loop().call_later(interval / 2, self._report_progress, interval)

    async def _give_up(self, message: BrokerMessage, reason: str, error: BaseException) -> None:
        """Dead-letter the message (or drop it without a target), logging why once."""
        attempts = self.max_retries + 1
        handler = self._handler_name(message.path)
        target = self.dead_letter_target_for(message)
        if target is None:
            self.log.dropped(message, reason, error, handler, attempts)
            await self._settle(message, message.drop(), "drop")
            return
        try:
            stored_at = await message.dead_letter(target, reason, error)
        except self._errors as exc:
            # Not stored: the original must stay. The delay keeps a broken setup from spinning.
            self.log.dead_letter_failed(message, target, reason, error, handler, attempts, exc, self.max_retry_delay)
            await self._settle(message, message.release(self.max_retry_delay), "hand back")
            return
        self.log.dead_lettered(message, stored_at or target, reason, error, handler, attempts)
        await self._settle(message, message.drop(), "settle")

    def _handler_name(self, path: str) -> str | None:
        try:
            return self.listener.routes.match(path)[0].name
        except EventNotFound:
            return None

    async def _settle(self, message: BrokerMessage, action: Any, what: str) -> None:
        """Await a settling call; one that fails for want of a connection is logged: the broker
        redelivers the message."""
        try:
            await action
        except self._errors as exc:
            self.log.not_settled(message, what, exc)


def _event_running_in(worker: asyncio.Task[Any]) -> Tuple[str, str] | None:
    """The event a flow's worker is running, as (path, handler name), or None: for the line
    shutdown logs about a worker that ignored its cancellation (``OwnedTasks.describe``).

    A handler that has no ``Event`` (see ``Listener._event_here``) is not registered as one,
    and recording each message's route for this one line would cost every message: its path
    and route are read from the frame of :meth:`BrokerSource._deliver_one` that runs it.
    """
    awaiting: Any = worker.get_coro()
    while awaiting is not None:
        frame = getattr(awaiting, "cr_frame", None)
        if frame is not None and frame.f_code is BrokerSource._deliver_one.__code__:
            found = frame.f_locals
            route = found.get("route")
            # Only while it awaits the handler: the locals are then the handler's message's.
            if awaiting.cr_await is found.get("running") and isinstance(route, Route):
                return str(found["path"]), route.name
            return None
        awaiting = getattr(awaiting, "cr_await", None)
    return None
