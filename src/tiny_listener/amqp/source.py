"""RabbitMQ on the one broker delivery flow: a queue consumed with a prefetch of
``max_in_flight``, each message an event (see :mod:`tiny_listener.sources.broker` for the flow).

What is RabbitMQ's own is here: connecting with aio-pika, declaring the queue, exchange
bindings, retry queues and dead-letter queue (named by :mod:`._topology`), noticing a lost
connection, channel or consumer, and :class:`AMQPMessage` (ack; a retry or a dead letter is a
copy of the message published to a retry queue or the dead-letter queue, then the original is
acknowledged; a release is a reject with requeue).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from typing import TYPE_CHECKING, Any, Deque, Dict, Mapping, Sequence, Tuple, Type
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._types import Scope
from ..codecs import Codec
from ..delivery import data_to_payload
from ..errors import ListenerError, NoReply
from ..optional import require
from ..sources.broker import BrokerMessage, BrokerSource, NotConnected
from . import _headers as headers_
from . import _topology as topology

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

logger = logging.getLogger("tiny_listener.amqp")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

_CHANNEL_CLOSED = "the channel the message came on is closed"

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
"""RabbitMQ's direct reply-to pseudo-queue: replies reach the requesting channel's consumer
without a queue of their own."""


class ConsumerCancelled(ListenerError):
    """RabbitMQ cancelled the listener's consumer, for example because its queue was deleted."""


class ConnectionLost(ListenerError):
    """RabbitMQ closed the connection or the channel the message came on, or cancelled the
    consumer: consuming must start over, and unacknowledged messages are redelivered."""


class AMQPMessage(BrokerMessage):
    """A RabbitMQ delivery: its event path is its ``x-event-path`` header (else its routing
    key), its attempt the ``x-attempt`` header, its id the message id (else the delivery tag)."""

    __slots__ = ("message", "source")

    def __init__(self, message: AbstractIncomingMessage, source: AMQPSource) -> None:
        headers = message.headers
        # BrokerMessage's attributes, set here directly: this runs for every message.
        self.path = headers_.event_path(headers, message.routing_key)
        self.payload = message.body
        self.attempt = headers_.attempt(headers)
        self.message_id = message.message_id or message.delivery_tag or ""
        self.message = message
        self.source = source

    def scope(self) -> Scope:
        return {"message": self.message, "attempt": self.attempt}

    async def ack(self) -> None:
        try:
            await self.message.ack()
        except RuntimeError as exc:  # aiormq: the channel it came on is closed
            raise ConnectionLost(_CHANNEL_CLOSED) from exc

    async def release(self, delay: float = 0.0) -> None:
        self._check_channel()
        if delay:
            await asyncio.sleep(delay)
        try:
            await self.message.reject(requeue=True)
        except RuntimeError as exc:
            raise ConnectionLost(_CHANNEL_CLOSED) from exc

    async def retry(self, delay: float, error: BaseException) -> None:
        """Publish a copy to the retry queue of ``delay`` (whose TTL sends it back to the work
        queue) as attempt ``attempt + 1``, then acknowledge the original. If the copy is not
        confirmed, the original is requeued after ``delay`` instead."""
        message = self.message
        retry_queue = topology.retry_queue_name(self.source.queue, round(delay * 1000))
        headers = headers_.retry_headers(message.headers, self.path, self.attempt + 1, error, message.exchange,
                                         message.routing_key)
        aio_pika = require("aio_pika", extra="amqp")
        try:
            await self._copy_to(retry_queue, headers)
        except ConnectionLost:
            raise
        except (OSError, asyncio.TimeoutError, NotConnected, aio_pika.exceptions.AMQPError):
            await self.release(delay)  # not copied: the original must stay, without spinning
            raise
        await self.ack()

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> None:
        message = self.message
        headers = headers_.dead_letter_headers(message.headers, self.path, reason, error, message.exchange,
                                               message.routing_key)
        await self._copy_to(target, headers)

    def reply_address(self) -> str | None:
        return self.message.reply_to or None

    async def reply(self, payload: bytes) -> None:
        """Publish ``payload`` to the message's ``reply_to`` queue (through the default
        exchange) with its correlation id; not mandatory: a requester that gave up is not an
        error of this message."""
        aio_pika = require("aio_pika", extra="amqp")
        message = self.message
        channel = await self.source._open_publish_channel()
        answer = aio_pika.Message(
            payload,
            content_type=getattr(self.source.codec, "content_type", None),
            correlation_id=message.correlation_id,
        )
        await channel.default_exchange.publish(answer, routing_key=message.reply_to or "", mandatory=False)

    def _check_channel(self) -> None:
        aio_pika = require("aio_pika", extra="amqp")
        try:
            self.message.channel  # noqa: B018 - raises once the channel it came on is closed
        except aio_pika.exceptions.ChannelInvalidStateError:
            # RabbitMQ has requeued the original already: a copy now would duplicate it.
            raise ConnectionLost(_CHANNEL_CLOSED) from None

    async def _copy_to(self, queue: str, headers: Dict[str, Any]) -> None:
        """Publish a persistent copy of the message to ``queue`` (through the default
        exchange, mandatory: an unroutable copy is an error) with ``headers``."""
        aio_pika = require("aio_pika", extra="amqp")
        self._check_channel()
        channel = self.source._channel
        if channel is None:
            raise NotConnected(f"not connected to {self.source.log.url}")
        message = self.message
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
        await channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)


class AMQPSource(BrokerSource):
    """Consume ``queue`` on RabbitMQ at ``url``; every message becomes an event. See
    :class:`~tiny_listener.amqp.AMQPListener` for the behaviour, and
    :class:`~tiny_listener.sources.broker.BrokerSource` for the settings shared by every
    broker. ``dead_letter=True`` dead-letters to the ``<queue>.dead`` queue."""

    kind = "amqp"
    broker = "RabbitMQ"
    url_schemes = ("amqp", "amqps")
    url_form = "amqp://[user:password@]host[:port][/vhost] (or amqps://)"
    # aiormq logs a dropped connection at ERROR level, with a traceback, beside the flow's line.
    client_loggers = ("aiormq.connection", "aio_pika.connection", "aio_pika.robust_connection")
    # RabbitMQ pushes up to the prefetch: take each message as soon as a slot is free.
    receive_in_batches = False
    receive_timeout = 1.0
    """Seconds one receive waits for a delivery (at shutdown, the receive under way ends first)."""

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
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
        connection_name: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            url,
            name=name,
            codec=codec,
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            max_retry_delay=max_retry_delay,
            dead_letter=dead_letter,
            reconnect_backoff=reconnect_backoff,
            max_reconnect_delay=max_reconnect_delay,
        )
        self.queue = queue
        self.exchange = exchange
        self.declare = declare
        self.durable = durable
        self.bind_routes = bind_routes
        self.connection_name = connection_name or f"tiny-listener {queue}"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._reply_channel: AbstractChannel | None = None
        self._reply_channel_lock: asyncio.Lock | None = None
        self._replies: Dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._consumer: Tuple[AbstractQueue, str] | None = None
        self._inbox: Deque[AbstractIncomingMessage] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._lost: BaseException | None = None

    # ------------------------------------------------------------------ public helpers

    async def publish(
        self,
        path: str,
        data: Any = None,
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish an event ``path`` with ``data`` (encoded by the codec) and return once
        RabbitMQ confirmed it; see :meth:`AMQPListener.publish <tiny_listener.amqp.AMQPListener.publish>`."""
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

    async def request(
        self,
        path: str,
        data: Any = None,
        *,
        timeout: float = 5.0,
        exchange: str | None = None,
        routing_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send ``data`` to ``path`` as a request (routed as :meth:`publish` routes it) and
        return the reply decoded by the codec.

        The request carries ``reply_to`` (RabbitMQ's direct reply-to) and a new
        ``correlation_id``, and expires in the queue after ``timeout`` seconds; the handler
        that takes it publishes its result back before acknowledging it.

        Raises :class:`~tiny_listener.NoReply` when no queue takes the request or no reply
        comes within ``timeout`` seconds, :class:`NotConnected` while there is no connection.
        """
        aio_pika = require("aio_pika", extra="amqp")
        channel = await self._open_reply_channel()
        exchange_name = self.exchange if exchange is None else exchange
        if exchange_name:
            target = await channel.get_exchange(exchange_name, ensure=False)
            key = path if routing_key is None else routing_key
        else:
            target = channel.default_exchange
            key = self.queue if routing_key is None else routing_key
        correlation_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._replies[correlation_id] = waiter = loop.create_future()
        message = aio_pika.Message(
            data_to_payload(data, self.codec),
            headers={**(headers or {}), headers_.EVENT_PATH: path},
            content_type=getattr(self.codec, "content_type", None),
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            expiration=timeout,
        )
        try:
            try:
                await asyncio.wait_for(target.publish(message, routing_key=key, mandatory=True), timeout)
            except aio_pika.exceptions.DeliveryError:
                raise NoReply(path, reason=f"no queue takes routing key {key!r}") from None
            try:
                reply = await asyncio.wait_for(waiter, max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                raise NoReply(path, timeout=timeout) from None
        finally:
            self._replies.pop(correlation_id, None)
        return self.codec.decode(reply.body)

    async def _open_reply_channel(self) -> AbstractChannel:
        """Return the channel requests are sent on, consuming RabbitMQ's direct reply-to
        (replies come to the channel that sent the request)."""
        if self._reply_channel_lock is None:
            self._reply_channel_lock = asyncio.Lock()
        async with self._reply_channel_lock:  # one channel for concurrent first requests
            channel = self._reply_channel
            if channel is not None and not channel.is_closed:
                return channel
            connection = self._connection
            if connection is None or connection.is_closed:
                raise NotConnected(f"not connected to {self.log.url}")
            channel = await connection.channel(on_return_raises=True)
            replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
            await replies.consume(self._on_reply, no_ack=True)
            self._reply_channel = channel
            return channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiter = self._replies.get(message.correlation_id or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def open_publisher(self) -> None:
        """Connect for :meth:`publish` and :meth:`request` only: nothing declared, nothing
        consumed."""
        aio_pika = require("aio_pika", extra="amqp")
        self._connection = await aio_pika.connect(_with_connection_name(self.url, self.connection_name))

    async def _open_publish_channel(self) -> AbstractChannel:
        """Return the publishing channel, opening a new one if RabbitMQ closed the last one
        (publishing to a missing exchange closes the channel, not the connection)."""
        channel = self._publish_channel
        if channel is not None and not channel.is_closed:
            return channel
        connection = self._connection
        if connection is None or connection.is_closed:
            raise NotConnected(f"not connected to {self.log.url}")
        self._publish_channel = channel = await connection.channel(on_return_raises=True)
        return channel

    # ------------------------------------------------------------------ the broker's part of the flow

    def connection_errors(self) -> Tuple[Type[BaseException], ...]:
        aio_pika = require("aio_pika", extra="amqp")
        exceptions = aio_pika.exceptions
        return (OSError, asyncio.TimeoutError, exceptions.AMQPError, exceptions.ChannelInvalidStateError,
                ConnectionLost, ConsumerCancelled)

    def intake(self) -> str:
        return f"queue {self.queue!r}"

    def why_cancelled(self, error: BaseException | None) -> str | None:
        if isinstance(error, ConsumerCancelled):
            return "the queue was deleted, or moved to another node"
        return None

    def default_dead_letter_target(self) -> str:
        return topology.dead_letter_queue_name(self.queue)

    async def connect(self) -> None:
        """Connect, open the channels, declare what is needed and start consuming; a lost
        connection, a closed channel or a cancelled consumer wake :meth:`receive`."""
        aio_pika = require("aio_pika", extra="amqp")
        self._lost = None
        self._inbox.clear()
        self._wake = asyncio.Event()
        self._connection = connection = await aio_pika.connect(_with_connection_name(self.url, self.connection_name))
        connection.close_callbacks.add(self._on_close)
        queue = await self._set_up(connection)
        channel = self._channel
        assert channel is not None
        # A channel error (RabbitMQ closes the channel, not the connection) stops consuming
        # just as well: start over on a new connection then.
        channel.close_callbacks.add(self._on_close)
        # So does RabbitMQ cancelling the consumer (the queue was deleted); only recent aiormq
        # versions report that (7.2 does, 6.8 does not).
        underlay = await channel.get_underlay_channel()
        cancel_callbacks = getattr(underlay, "on_consumer_cancel_callbacks", None)
        if cancel_callbacks is not None:
            cancel_callbacks.add(self._on_consumer_cancelled)
        self._consumer = (queue, await queue.consume(self._on_message))

    async def _set_up(self, connection: AbstractConnection) -> AbstractQueue:
        """Open the channels, declare what is needed and return the work queue."""
        aio_pika = require("aio_pika", extra="amqp")
        channel = await connection.channel(on_return_raises=True)
        await channel.set_qos(prefetch_count=self.max_in_flight)
        publish_channel = await connection.channel(on_return_raises=True)
        if self.declare:
            queue = await channel.declare_queue(self.queue, durable=self.durable)
        else:
            queue = await channel.get_queue(self.queue, ensure=True)
        if self.exchange:
            if self.declare:
                exchange = await channel.declare_exchange(
                    self.exchange, aio_pika.ExchangeType.TOPIC, durable=self.durable
                )
            else:
                exchange = await channel.get_exchange(self.exchange, ensure=True)
            if self.bind_routes:
                for key in topology.binding_keys(self.listener.routes):
                    await queue.bind(exchange, routing_key=key)
        for delay_ms in set(topology.retry_delays_ms(self.max_retries, self.retry_backoff, self.max_retry_delay)):
            await channel.declare_queue(
                topology.retry_queue_name(self.queue, delay_ms),
                durable=True,
                arguments=topology.retry_queue_arguments(self.queue, delay_ms),
            )
        target = self.dead_letter_target
        if target is not None:
            await channel.declare_queue(target, durable=True)
        self._channel, self._publish_channel = channel, publish_channel
        return queue

    async def receive(self, max_messages: int) -> Sequence[AMQPMessage]:
        """Return the deliveries RabbitMQ pushed (at most ``max_messages``), waiting up to
        ``receive_timeout`` for one; raise :class:`ConnectionLost` once the connection, the
        channel or the consumer is gone."""
        inbox, wake = self._inbox, self._wake
        if wake is None:
            raise NotConnected(f"not connected to {self.log.url}")
        if not inbox and self._lost is None:
            # A timer that sets the wake-up event, not asyncio.wait_for(), which (before Python
            # 3.12) starts a task per call: with a prefetch of max_in_flight, RabbitMQ pushes
            # one message per acknowledgement, so this waits about once per message.
            wake.clear()
            timer = asyncio.get_running_loop().call_later(self.receive_timeout, wake.set)
            try:
                await wake.wait()
            finally:
                timer.cancel()
            if not inbox and self._lost is None:
                return []
        lost = self._lost
        if lost is not None:
            if isinstance(lost, (ConsumerCancelled, OSError, require("aio_pika", extra="amqp").exceptions.AMQPError)):
                raise lost  # what aio-pika reported, as it reported it
            raise ConnectionLost(repr(lost))
        count = min(max_messages, len(inbox))
        return [AMQPMessage(inbox.popleft(), self) for _ in range(count)]

    async def stop_receiving(self) -> None:
        """Cancel the consumer (RabbitMQ stops pushing), then requeue what it pushed that the
        flow did not take."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None and self._lost is None:
            queue, tag = consumer
            await queue.cancel(tag)
        while self._inbox:
            message = AMQPMessage(self._inbox.popleft(), self)
            try:
                await message.release()
            except self._errors as exc:  # the channel is gone: RabbitMQ requeued it already
                logger.debug("could not requeue message %s: %r", message.message_id, exc)

    async def disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._publish_channel = self._reply_channel = None
        self._consumer = None
        self._inbox.clear()  # unacknowledged: RabbitMQ requeues them with the connection
        if connection is not None and not connection.is_closed:
            await connection.close()

    # ------------------------------------------------------------------ callbacks of aio-pika

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Called by aio-pika for each delivery, no more than the prefetch unacknowledged.
        self._inbox.append(message)
        if self._wake is not None:
            self._wake.set()

    def _on_close(self, _closed: Any, reason: BaseException | None = None, *_: Any) -> None:
        """aio-pika closed the connection or the consuming channel."""
        self._lose(reason or ConnectionLost("closed"))

    def _on_consumer_cancelled(self, frame: Any) -> None:
        """aiormq calls this when RabbitMQ cancels the consumer."""
        self._lose(ConsumerCancelled(f"RabbitMQ cancelled consumer {getattr(frame, 'consumer_tag', '?')}"))

    def _lose(self, reason: BaseException) -> None:
        if self._lost is None:
            self._lost = reason
        if self._wake is not None:
            self._wake.set()


def _with_connection_name(url: str, name: str) -> str:
    """Return ``url`` with ``name=`` in its query unless it has one: the connection name shown
    by RabbitMQ, set the way every aio-pika/aiormq version reads it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "name" for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("name", name)], quote_via=quote)))
