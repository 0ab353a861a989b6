"""NATS JetStream listener: a durable pull consumer whose messages become events.

The network side is nats-py; what to do with a message (event data, retry or dead-letter) is
decided by :mod:`tiny_listener.delivery` and :mod:`._subjects`, which hold no network code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, List, Mapping, Sequence, Set

from ..codecs import Codec, JsonCodec
from ..delivery import (
    DeadLetter,
    DeliverySettings,
    Undeliverable,
    after_failure,
    data_to_payload,
    dead_letter_target,
    start_event,
)
from ..errors import ListenerError
from ..listener import CTXType, Listener
from ..optional import require
from . import _subjects as subjects_

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import PubAck
    from nats.js.client import JetStreamContext

logger = logging.getLogger("tiny_listener.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"


class NotConnected(ListenerError):
    """The listener has no open connection to NATS (not started yet, or reconnecting)."""


class NATSListener(DeliverySettings, Listener[CTXType]):
    """Consume JetStream ``stream`` through the durable pull consumer ``durable``; every
    message becomes an event whose path is the message's subject.

    - The body, decoded by ``codec`` (JSON by default), is the event data.
    - With ``create_stream`` the stream is created if missing, on ``subjects`` (default: one
      per route, ``orders.{id}`` -> ``orders.*``, ``{rest:path}`` -> ``>``). The consumer is
      created if missing, filtered on the only subject if there is one.
    - Several processes with the same ``stream`` and ``durable`` share the messages.
    - At most ``max_in_flight`` messages are handled at once by this process.
    - A message is acknowledged after its handler succeeded. When the handler fails it is
      nak'ed with a delay (``retry_backoff`` seconds doubling up to ``max_retry_delay``) and
      redelivered, up to ``max_retries`` times; then it is published to the ``dead_letter``
      subject (default ``deadletter.<stream>``, kept in the ``<stream>_dead`` stream that is
      created with the stream) with the error in its headers, and terminated. A message that
      matches no route or cannot be decoded is dead-lettered at once. ``dead_letter=False``
      logs such messages as errors and terminates them instead.
    - A handler running longer than ``ack_wait`` seconds keeps its message with progress
      acknowledgements; a message of a process that died is redelivered after ``ack_wait``.
    - A lost connection is logged and re-made, after ``reconnect_backoff`` seconds doubling up
      to ``max_reconnect_delay``.
    - At shutdown, fetching stops, in-flight messages finish and are acknowledged (up to
      ``shutdown_timeout``); unfinished ones are nak'ed for immediate redelivery.
    """

    # How long one pull request waits for messages; also how soon a lost connection is seen
    # by a consumer that has nothing to do.
    fetch_timeout: float = 1.0
    # After this many empty pulls in a row, check that the consumer still exists.
    idle_pulls_between_checks: int = 5

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str,
        durable: str,
        subjects: Sequence[str] | None = None,
        create_stream: bool = True,
        codec: Codec | None = None,
        max_in_flight: int = 32,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        dead_letter: str | bool = True,
        reconnect_backoff: float = 0.1,
        ack_wait: float = 30.0,
        connection_name: str | None = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(max_event_history=max_event_history, shutdown_timeout=shutdown_timeout)
        self._set_delivery_settings(
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            reconnect_backoff=reconnect_backoff,
        )
        self.url = url
        self.stream = stream
        self.durable = durable
        self.subjects: List[str] | None = list(subjects) if subjects is not None else None
        self.create_stream = create_stream
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.ack_wait = ack_wait
        self.dead_letter_subject = dead_letter_target(dead_letter, subjects_.dead_letter_subject(stream))
        self.connection_name = connection_name or f"tiny-listener {stream}/{durable}"

        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connected: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._message_tasks: Set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ public helpers

    def stream_subjects(self) -> List[str]:
        """Return the subjects a created stream listens on: ``subjects``, else one per route."""
        return list(self.subjects) if self.subjects is not None else subjects_.route_subjects(self.routes)

    async def wait_connected(self) -> None:
        """Return once the listener consumes its stream (at once if it already does)."""
        await self._connected_event().wait()

    @property
    def connected(self) -> bool:
        """True while the listener consumes its stream."""
        return self._connected is not None and self._connected.is_set()

    async def publish(self, path: str, data: Any = None, *, headers: Mapping[str, str] | None = None) -> PubAck:
        """Publish an event ``path`` (the subject) with ``data`` encoded by the listener's codec;
        return JetStream's acknowledgement once a stream stored it.

        Raises :class:`NotConnected` while there is no connection, and
        ``nats.errors.NoRespondersError`` if no stream takes the subject.
        """
        js = self._js
        if js is None or self._nc is None or not self._nc.is_connected:
            raise NotConnected(f"not connected to {self.url}")
        return await js.publish(path, data_to_payload(data, self.codec), headers=dict(headers) if headers else None)

    # ------------------------------------------------------------------ connection

    async def listen(self) -> None:
        """Connect, make sure the stream and consumer exist, pull and dispatch messages;
        re-connect whenever the connection is lost. Runs until cancelled at shutdown."""
        nats = require("nats", extra="nats")
        delays = self._reconnect_delays()
        nc: Client | None = None
        try:
            while True:
                try:
                    nc = await nats.connect(
                        self.url,
                        allow_reconnect=False,  # reconnecting is ours, with backoff and a log line
                        # One quick attempt, then NoServersError: nats-py would otherwise
                        # retry the first connection 60 times, 2 s apart, without a word.
                        max_reconnect_attempts=1,
                        reconnect_time_wait=0,
                        connect_timeout=2,
                        name=self.connection_name,
                        error_cb=_log_client_error,
                    )
                    js = nc.jetstream()
                    subscription = await self._set_up(js)
                except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
                    delay = next(delays)
                    logger.warning("cannot consume stream %r on %s (%r); retrying in %.2fs", self.stream, self.url,
                                   exc, delay)
                    if nc is not None:
                        await nc.close()
                        nc = None
                    await asyncio.sleep(delay)
                    continue
                self._nc, self._js = nc, js
                delays = self._reconnect_delays()
                logger.info("consuming stream %r as %r on %s (up to %d in flight)", self.stream, self.durable,
                            self.url, self.max_in_flight)
                self._connected_event().set()
                reason: BaseException | None = None
                try:
                    await self._pull(nc, subscription)
                except (OSError, nats.errors.Error) as exc:
                    reason = exc
                self._connected_event().clear()
                self._nc = self._js = None
                await nc.close()
                nc = None
                delay = next(delays)
                logger.warning(
                    "consuming stream %r on %s stopped (%r: connection lost or consumer gone); %d message(s) in "
                    "flight will be redelivered; reconnecting in %.2fs",
                    self.stream, self.url, reason or "closed", len(self._message_tasks), delay,
                )
                await asyncio.sleep(delay)
        finally:
            if self._connected is not None:
                self._connected.clear()
            if nc is not None and not nc.is_closed:
                # Intake stopped (no more pulls); the connection stays until in-flight
                # messages are acknowledged.
                self.spawn(self._close_when_idle(nc), name="nats-close-when-idle", drain=True)

    async def _set_up(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        """Create the stream, dead-letter stream and consumer if needed; bind to the consumer."""
        nats = require("nats", extra="nats")
        api = nats.js.api
        if self.create_stream:
            await self._ensure_stream(js, self.stream, self.stream_subjects())
            if self.dead_letter_subject is not None:
                await self._ensure_stream(js, subjects_.dead_letter_stream(self.stream), [self.dead_letter_subject])
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # The listener counts deliveries itself and dead-letters; a server-side limit
            # would strand messages where nobody sees them.
            max_deliver=-1,
        )
        filters = self.stream_subjects()
        if len(filters) == 1:
            config.filter_subject = filters[0]
        try:
            await js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(self.stream, config=config)
        return await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def _ensure_stream(self, js: JetStreamContext, name: str, subjects: List[str]) -> None:
        nats = require("nats", extra="nats")
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(name=name, subjects=subjects)
            logger.info("created stream %r on subjects %s", name, subjects)

    async def _pull(self, nc: Client, subscription: JetStreamContext.PullSubscription) -> None:
        """Fetch messages while there are free slots, until the connection is lost."""
        nats = require("nats", extra="nats")
        slot_freed = self._slot_freed = asyncio.Event()
        # Pull again once half the slots are free: a pull per freed slot would cost a round
        # trip per message.
        refill_at = max(1, self.max_in_flight // 2)
        idle_pulls = 0
        while not nc.is_closed:
            free = self.max_in_flight - len(self._message_tasks)
            if free < refill_at:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            fetch = asyncio.ensure_future(subscription.fetch(free, timeout=self.fetch_timeout))
            try:
                messages = await asyncio.shield(fetch)
            except nats.errors.TimeoutError:
                idle_pulls += 1
                if idle_pulls % self.idle_pulls_between_checks == 0:
                    # A pull on a deleted consumer only times out: check that it still
                    # exists (NotFoundError makes the listener set it up again).
                    await subscription.consumer_info()
                continue
            except asyncio.CancelledError:
                await self._hand_back(fetch)
                raise
            idle_pulls = 0
            for message in messages:
                task = self.spawn(self._process(message), name="nats-message", drain=True)
                self._message_tasks.add(task)
                task.add_done_callback(self._message_done)

    async def _hand_back(self, fetch: asyncio.Future[List[Msg]]) -> None:
        """Intake stops during ``fetch``: let its pull request end (within ``fetch_timeout``)
        instead of leaving it on the server, where it would take messages to a connection
        about to close, and nak what it brought so that other consumers get it at once."""
        try:
            messages = await fetch
        except Exception:  # nothing came, or the connection is gone: nothing to hand back
            return
        for message in messages:
            await self._settle(message.nak(), message.subject, "nak")

    def _message_done(self, task: asyncio.Task[None]) -> None:
        self._message_tasks.discard(task)
        if self._slot_freed is not None:
            self._slot_freed.set()

    async def _close_when_idle(self, nc: Client) -> None:
        """Close ``nc`` once the in-flight messages are handled and acknowledged (or when
        shutdown gives up on them: they are nak'ed, or redelivered after ``ack_wait``)."""
        try:
            if self._message_tasks:
                await asyncio.wait(set(self._message_tasks))
        finally:
            if self._message_tasks:
                # Shutdown cancelled them with this task: let them send their naks first.
                await asyncio.wait(set(self._message_tasks), timeout=2)
            self._nc = self._js = None
            try:
                await nc.flush(timeout=2)
            except Exception as exc:  # closing anyway; unflushed acks mean redeliveries
                logger.warning("could not flush acknowledgements before closing: %r", exc)
            await nc.close()
            logger.info("disconnected from %s", self.url)

    # ------------------------------------------------------------------ messages

    async def _process(self, message: Msg) -> None:
        """Handle one message: dispatch its event, then ack, nak or dead-letter it."""
        path = message.subject
        metadata = message.metadata
        attempt = metadata.num_delivered
        task = start_event(self, path, message.data, self.codec, {"message": message, "attempt": attempt})
        if isinstance(task, Undeliverable):
            await self._dead_letter(message, path, task.reason, task.error)
            return
        try:
            await self._await_with_progress(task, message)
        except asyncio.CancelledError:
            # Shutdown gave up on it: hand it back at once rather than after ack_wait.
            await self._settle(message.nak(), path, "nak")
            raise
        except Exception as exc:  # the handler failed; the core has logged it
            step = after_failure(attempt, self.max_retries, self.retry_backoff, self.max_retry_delay)
            if isinstance(step, DeadLetter):
                await self._dead_letter(message, path, step.reason, exc)
            else:
                logger.warning("event %r failed (delivery %d of %d); redelivery in %.2fs", path, attempt,
                               self.max_retries + 1, step.delay)
                await self._settle(message.nak(delay=step.delay), path, "nak")
            return
        await self._settle(message.ack(), path, "acknowledge")

    async def _await_with_progress(self, task: asyncio.Task[Any], message: Msg) -> None:
        """Await ``task``; while it runs longer than half of ``ack_wait``, tell JetStream the
        message is in progress so that it is not redelivered to another consumer."""
        timer = asyncio.get_running_loop().call_later(self.ack_wait / 2, self._report_progress, message, task)
        try:
            await task
        finally:
            timer.cancel()

    def _report_progress(self, message: Msg, task: asyncio.Task[Any]) -> None:
        # A timer, not a task per message: most handlers end long before it fires.
        if task.done():
            return
        self.spawn(self._settle(message.in_progress(), message.subject, "extend"), name="nats-in-progress")
        asyncio.get_running_loop().call_later(self.ack_wait / 2, self._report_progress, message, task)

    async def _dead_letter(self, message: Msg, path: str, reason: str, error: Exception) -> None:
        nats = require("nats", extra="nats")
        metadata = message.metadata
        if self.dead_letter_subject is None:
            logger.error("dropping message %r (%s): %r; no dead-letter subject is configured", path, reason, error)
            await self._settle(message.term(), path, "terminate")
            return
        js = self._js
        headers = subjects_.dead_letter_headers(message.headers, path, reason, error, metadata.num_delivered,
                                                metadata.stream, metadata.sequence.stream)
        logger.error("dead-lettering message %r to %r (%s): %r", path, self.dead_letter_subject, reason, error)
        try:
            if js is None:
                raise NotConnected(f"not connected to {self.url}")
            await js.publish(self.dead_letter_subject, message.data, headers=headers)
        except (OSError, ListenerError, nats.errors.Error, asyncio.TimeoutError) as exc:
            # Not stored: the original must stay. The delay keeps a broken setup from spinning.
            delay = self.max_retry_delay
            logger.error("could not publish to %r (%r); redelivering the message in %.2fs",
                         self.dead_letter_subject, exc, delay)
            await self._settle(message.nak(delay=delay), path, "nak")
            return
        await self._settle(message.term(), path, "terminate")

    async def _settle(self, action: Any, path: str, what: str) -> None:
        try:
            await action
        except Exception as exc:
            # The client library is looked up only here: this runs for every message.
            if not isinstance(exc, (OSError, require("nats", extra="nats").errors.Error)):
                raise
            # Not delivered to the server: JetStream redelivers the message after ack_wait.
            logger.warning("could not %s message %r (%r); JetStream will redeliver it", what, path, exc)

    # ------------------------------------------------------------------ helpers

    def _connected_event(self) -> asyncio.Event:
        # Made on first use, inside the running loop (Python 3.9 binds an Event to a loop).
        if self._connected is None:
            self._connected = asyncio.Event()
        return self._connected


async def _log_client_error(error: Exception) -> None:
    # nats-py reports a lost connection here first; the listener logs it once, as a warning.
    logger.debug("nats client error: %r", error)
