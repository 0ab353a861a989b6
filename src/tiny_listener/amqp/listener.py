"""RabbitMQ listener: each message of a queue becomes an event, acknowledged once handled.

The network side is aio-pika; what to do with a message (event path, data, retry or
dead-letter) is decided by :mod:`tiny_listener.delivery` and the ``_headers``/``_topology``
modules, which hold no network code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Dict, Mapping, Set
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..backoff import retry_delay
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
from ..sources.broker import NotConnected
from . import _headers as headers_
from . import _topology as topology

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

logger = logging.getLogger("tiny_listener.amqp")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


class AMQPListener(DeliverySettings, Listener[CTXType]):
    """Consume ``queue`` on RabbitMQ at ``url``; every message becomes an event.

    - The event path is the message's ``x-event-path`` header, else its routing key; the body,
      decoded by ``codec`` (JSON by default), is the event data.
    - ``declare`` declares the queue (durable if ``durable``); with ``declare=False`` it must
      exist. With ``exchange`` (a topic exchange, declared too if ``declare``) and
      ``bind_routes``, the queue is bound with one key per route: ``order.{id}.created`` ->
      ``order.*.created``, ``{rest:path}`` -> ``#``.
    - At most ``max_in_flight`` messages are handled at once (the channel's prefetch).
    - A message is acknowledged after its handler succeeded. When the handler fails it is
      retried up to ``max_retries`` times, after ``retry_backoff`` seconds doubling up to
      ``max_retry_delay``, by waiting in a retry queue; then it is dead-lettered to the
      ``<queue>.dead`` queue (or the queue named by ``dead_letter``) with the error in its
      headers. A message that matches no route or cannot be decoded is dead-lettered at once.
      ``dead_letter=False`` logs such messages as errors and acknowledges them instead.
    - A lost connection is logged and re-made, after ``reconnect_backoff`` seconds doubling up to
      ``max_reconnect_delay``; messages in flight then are redelivered by RabbitMQ.
    - At shutdown, consuming stops, in-flight messages finish and are acknowledged (up to
      ``shutdown_timeout``); unfinished ones stay unacknowledged and RabbitMQ redelivers them.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        queue: str,
        exchange: str | None = None,
        declare: bool = True,
        durable: bool = True,
        bind_routes: bool = True,
        codec: Codec | None = None,
        max_in_flight: int = 32,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        dead_letter: str | bool = True,
        reconnect_backoff: float = 0.1,
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
        self.queue = queue
        self.exchange = exchange
        self.declare = declare
        self.durable = durable
        self.bind_routes = bind_routes
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.dead_letter_queue = dead_letter_target(dead_letter, topology.dead_letter_queue_name(queue))
        self.connection_name = connection_name or f"tiny-listener {queue}"

        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._accepting = False
        self._connected: asyncio.Event | None = None
        self._message_tasks: Set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ public helpers

    async def wait_connected(self) -> None:
        """Return once the listener consumes its queue (at once if it already does)."""
        await self._connected_event().wait()

    @property
    def connected(self) -> bool:
        """True while the listener consumes its queue."""
        return self._connected is not None and self._connected.is_set()

    async def publish(
        self,
        path: str,
        data: Any = None,
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish an event ``path`` with ``data`` (encoded by the listener's codec) and return
        once RabbitMQ confirmed it.

        It goes to ``exchange`` (default: the listener's exchange, else the default exchange)
        with ``routing_key`` (default: ``path`` on a named exchange, the listener's queue on
        the default exchange); the path also travels in the ``x-event-path`` header.
        Raises :class:`NotConnected` while there is no connection, and
        ``aio_pika.exceptions.DeliveryError`` if no queue receives the message.
        """
        aio_pika = require("aio_pika", extra="amqp")
        channel = await self._open_publish_channel()
        exchange_name = self.exchange if exchange is None else exchange
        if exchange_name:
            target = await channel.get_exchange(exchange_name, ensure=False)
            key = path if routing_key is None else routing_key
        else:
            target = channel.default_exchange
            key = self.queue if routing_key is None else routing_key
        message = aio_pika.Message(
            data_to_payload(data, self.codec),
            headers={**(headers or {}), headers_.EVENT_PATH: path},
            content_type=getattr(self.codec, "content_type", None),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await target.publish(message, routing_key=key, mandatory=True)

    async def _open_publish_channel(self) -> AbstractChannel:
        """Return the publishing channel, opening a new one if RabbitMQ closed the last one
        (publishing to a missing exchange closes the channel, not the connection)."""
        channel = self._publish_channel
        if channel is not None and not channel.is_closed:
            return channel
        connection = self._connection
        if connection is None or connection.is_closed or not self.connected:
            raise NotConnected(f"not connected to {self._safe_url()}")
        self._publish_channel = channel = await connection.channel(on_return_raises=True)
        return channel

    # ------------------------------------------------------------------ connection

    async def listen(self) -> None:
        """Connect, declare, consume; re-connect whenever the connection is lost. Runs until
        cancelled at shutdown."""
        aio_pika = require("aio_pika", extra="amqp")
        delays = self._reconnect_delays()
        connection: AbstractConnection | None = None
        queue: AbstractQueue | None = None
        consumer_tag: str | None = None
        try:
            while True:
                lost = _ConnectionLoss()
                try:
                    connection = await aio_pika.connect(
                        _with_connection_name(self.url, self.connection_name)
                    )
                    connection.close_callbacks.add(lost)
                    queue = await self._set_up(connection)
                    # A channel error (RabbitMQ closes the channel, not the connection) stops
                    # consuming just as well: start over on a new connection then.
                    if self._channel is not None:
                        self._channel.close_callbacks.add(lost)
                        # So does RabbitMQ cancelling the consumer (the queue was deleted); only
                        # recent aiormq versions report that (7.2 does, 6.8 does not).
                        underlay = await self._channel.get_underlay_channel()
                        cancel_callbacks = getattr(underlay, "on_consumer_cancel_callbacks", None)
                        if cancel_callbacks is not None:
                            cancel_callbacks.add(lost.consumer_cancelled)
                    self._accepting = True
                    consumer_tag = await queue.consume(self._on_message)
                except (OSError, aio_pika.exceptions.AMQPError, asyncio.TimeoutError) as exc:
                    delay = next(delays)
                    logger.warning(
                        "cannot consume %r on %s (%r); retrying in %.2fs", self.queue, self._safe_url(), exc, delay
                    )
                    self._accepting = False
                    if connection is not None:
                        await connection.close()
                        connection = None
                    await asyncio.sleep(delay)
                    continue
                delays = self._reconnect_delays()
                logger.info("consuming %r on %s (prefetch %d)", self.queue, self._safe_url(), self.max_in_flight)
                self._connected_event().set()
                await lost.event.wait()
                self._accepting = False
                self._connected_event().clear()
                self._connection = self._channel = self._publish_channel = None
                delay = next(delays)
                logger.warning(
                    "consuming %r on %s stopped (%r: connection lost, channel closed or consumer cancelled); "
                    "%d message(s) in flight will be redelivered; reconnecting in %.2fs",
                    self.queue,
                    self._safe_url(),
                    lost.reason,
                    len(self._message_tasks),
                    delay,
                )
                if not connection.is_closed:
                    await connection.close()
                connection = queue = consumer_tag = None
                await asyncio.sleep(delay)
        finally:
            # Stop intake first; the connection stays open until in-flight messages are acked.
            self._accepting = False
            if self._connected is not None:
                self._connected.clear()
            if connection is not None and not connection.is_closed:
                if queue is not None and consumer_tag is not None:
                    try:
                        await queue.cancel(consumer_tag)
                    except (OSError, aio_pika.exceptions.AMQPError, asyncio.TimeoutError) as exc:
                        logger.warning("could not cancel the consumer of %r: %r", self.queue, exc)
                self.spawn(self._close_when_idle(connection), name="amqp-close-when-idle", drain=True)

    async def _set_up(self, connection: AbstractConnection) -> AbstractQueue:
        """Open the channels, declare what is needed and return the work queue."""
        channel = await connection.channel(on_return_raises=True)
        await channel.set_qos(prefetch_count=self.max_in_flight)
        publish_channel = await connection.channel(on_return_raises=True)
        if self.declare:
            queue = await channel.declare_queue(self.queue, durable=self.durable)
        else:
            queue = await channel.get_queue(self.queue, ensure=True)
        if self.exchange:
            aio_pika = require("aio_pika", extra="amqp")
            if self.declare:
                exchange = await channel.declare_exchange(
                    self.exchange, aio_pika.ExchangeType.TOPIC, durable=self.durable
                )
            else:
                exchange = await channel.get_exchange(self.exchange, ensure=True)
            if self.bind_routes:
                for key in topology.binding_keys(self.routes):
                    await queue.bind(exchange, routing_key=key)
        for delay_ms in set(topology.retry_delays_ms(self.max_retries, self.retry_backoff, self.max_retry_delay)):
            await channel.declare_queue(
                topology.retry_queue_name(self.queue, delay_ms),
                durable=True,
                arguments=topology.retry_queue_arguments(self.queue, delay_ms),
            )
        if self.dead_letter_queue is not None:
            await channel.declare_queue(self.dead_letter_queue, durable=True)
        self._connection, self._channel, self._publish_channel = connection, channel, publish_channel
        return queue

    async def _close_when_idle(self, connection: AbstractConnection) -> None:
        """Close ``connection`` once the in-flight messages are handled and acknowledged (or
        when shutdown gives up on them: unacknowledged messages then go back to the queue)."""
        try:
            if self._message_tasks:
                await asyncio.wait(set(self._message_tasks))
        finally:
            await connection.close()
            logger.info("disconnected from %s", self._safe_url())

    # ------------------------------------------------------------------ messages

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Called by aio-pika for each delivery; the work runs in a task the listener owns and
        # drains at shutdown, so that a message being handled is acknowledged before we close.
        if not self._accepting:
            return  # consuming is stopping: left unacknowledged, RabbitMQ redelivers it
        task = self.spawn(self._process(message), name="amqp-message", drain=True)
        self._message_tasks.add(task)
        task.add_done_callback(self._message_tasks.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        """Handle one message: dispatch its event, then ack, retry or dead-letter it."""
        path = headers_.event_path(message.headers, message.routing_key)
        attempt = headers_.attempt(message.headers)
        task = start_event(self, path, message.body, self.codec, {"message": message, "attempt": attempt})
        if isinstance(task, Undeliverable):
            await self._dead_letter(message, path, task.reason, task.error)
            return
        try:
            await task
        except Exception as exc:  # the handler failed; the core has logged it
            await self._after_failure(message, path, attempt, exc)
            return
        await self._settle(message.ack(), message, "acknowledge")

    async def _after_failure(self, message: AbstractIncomingMessage, path: str, attempt: int, error: Exception) -> None:
        step = after_failure(attempt, self.max_retries, self.retry_backoff, self.max_retry_delay)
        if isinstance(step, DeadLetter):
            await self._dead_letter(message, path, step.reason, error)
            return
        delay_ms = round(step.delay * 1000)
        retry_queue = topology.retry_queue_name(self.queue, delay_ms)
        headers = headers_.retry_headers(message.headers, path, step.attempt, error, message.exchange,
                                         message.routing_key)
        logger.warning("event %r failed (attempt %d of %d); retrying in %.2fs", path, attempt,
                       self.max_retries + 1, step.delay)
        await self._forward(message, retry_queue, headers)

    async def _dead_letter(self, message: AbstractIncomingMessage, path: str, reason: str, error: Exception) -> None:
        if self.dead_letter_queue is None:
            logger.error("dropping message %r (%s): %r; no dead-letter queue is configured", path, reason, error)
            await self._settle(message.ack(), message, "acknowledge")
            return
        logger.error("dead-lettering message %r to %r (%s): %r", path, self.dead_letter_queue, reason, error)
        headers = headers_.dead_letter_headers(message.headers, path, reason, error, message.exchange,
                                               message.routing_key)
        await self._forward(message, self.dead_letter_queue, headers)

    async def _forward(self, message: AbstractIncomingMessage, queue: str, headers: Dict[str, Any]) -> None:
        """Copy ``message`` to ``queue`` with ``headers``, then acknowledge the original; if the
        copy is not confirmed, requeue the original after a pause instead."""
        aio_pika = require("aio_pika", extra="amqp")
        channel = self._channel
        try:
            message.channel  # noqa: B018 - raises once the channel it came on is closed
        except aio_pika.exceptions.ChannelInvalidStateError:
            # Copying it now would duplicate it: RabbitMQ has requeued the original already.
            logger.warning("not moving message %r to %r: its channel is closed and RabbitMQ will redeliver it",
                           message.message_id or message.delivery_tag, queue)
            return
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            reply_to=message.reply_to,
            type=message.type,
            app_id=message.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            if channel is None:
                raise NotConnected(f"not connected to {self._safe_url()}")
            await channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)
        except (OSError, ListenerError, aio_pika.exceptions.AMQPError, asyncio.TimeoutError) as exc:
            # Not moved: the original must stay. A pause keeps a broken queue from spinning.
            pause = retry_delay(1, initial=self.retry_backoff, maximum=self.max_retry_delay)
            logger.error("could not move message to %r (%r); requeueing it in %.2fs", queue, exc, pause)
            await asyncio.sleep(pause)
            await self._settle(message.reject(requeue=True), message, "requeue")
            return
        await self._settle(message.ack(), message, "acknowledge")

    async def _settle(self, action: Any, message: AbstractIncomingMessage, what: str) -> None:
        try:
            await action
        except Exception as exc:
            # The client library is looked up only here: this runs for every message.
            amqp_error = require("aio_pika", extra="amqp").exceptions.AMQPError
            if not isinstance(exc, (OSError, amqp_error, asyncio.TimeoutError, RuntimeError)):
                raise
            # The channel it came on is gone: RabbitMQ has requeued the message already.
            logger.warning("could not %s message %r (%r); RabbitMQ will redeliver it", what,
                           message.message_id or message.delivery_tag, exc)

    # ------------------------------------------------------------------ helpers

    def _connected_event(self) -> asyncio.Event:
        # Made on first use, inside the running loop (Python 3.9 binds an Event to a loop).
        if self._connected is None:
            self._connected = asyncio.Event()
        return self._connected

    def _safe_url(self) -> str:
        """The URL without its password, for logs."""
        scheme, sep, rest = self.url.partition("://")
        if "@" in rest:
            credentials, _, host = rest.rpartition("@")
            user = credentials.split(":", 1)[0]
            return f"{scheme}{sep}{user}:***@{host}"
        return self.url


class _ConnectionLoss:
    """Set when aio-pika reports the connection closed (it calls close callbacks with the
    connection and the error), keeping the error for the log line."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason: BaseException | None = None

    def __call__(self, _connection: Any, reason: BaseException | None = None, *_: Any) -> None:
        self.reason = reason
        self.event.set()

    def consumer_cancelled(self, frame: Any) -> None:
        """aiormq calls this when RabbitMQ cancels the consumer."""
        self(None, ConsumerCancelled(f"RabbitMQ cancelled consumer {getattr(frame, 'consumer_tag', '?')}"))


class ConsumerCancelled(ListenerError):
    """RabbitMQ cancelled the listener's consumer, for example because its queue was deleted."""


def _with_connection_name(url: str, name: str) -> str:
    """Return ``url`` with ``name=`` in its query unless it has one: the connection name shown
    by RabbitMQ, set the way every aio-pika/aiormq version reads it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "name" for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("name", name)], quote_via=quote)))
