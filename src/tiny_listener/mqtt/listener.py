"""An MQTT listener on aiomqtt: topics are event paths, payloads event data."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import ssl
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Coroutine, List, Tuple
from urllib.parse import unquote, urlsplit

from .. import delivery
from .._types import EventData
from ..backoff import retry_delay
from ..codecs import Codec, DecodeError, RawCodec
from ..context import Context
from ..delivery import DeliverySettings
from ..errors import EventNotFound
from ..listener import Listener
from ..optional import require
from ..sources.broker import NotConnected
from . import deadletter
from .topics import subscriptions

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger("tiny_listener.mqtt")

# A dead letter without a dead-letter topic is logged with its payload, up to this size.
MAX_LOGGED_PAYLOAD = 4096


def payload_to_data(payload: bytes, codec: Codec | None) -> EventData:
    """Return the event data of a payload: ``{"payload": payload}`` without a codec; with one,
    the decoded value, which is the data itself if it is a mapping and ``{"payload": value}``
    otherwise. Raises :class:`~tiny_listener.codecs.DecodeError` if the codec cannot decode."""
    if codec is None:
        return {"payload": payload}
    return delivery.payload_to_data(payload, codec)


class MQTTListener(DeliverySettings, Listener[Context]):
    """Subscribe to the topic filters of the routes and run an event per message.

    See ``docs/mqtt.md`` for the whole contract. In short: ``url`` is
    ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS); a message's topic is its
    event path and its payload its data (``{"payload": bytes}``, or decoded by ``codec``);
    ``scope["message"]`` of the event's context is the ``aiomqtt.Message``. Subscriptions use
    ``qos`` (or a route's ``qos=`` option). With QoS 1 a message is acknowledged only after
    its handler succeeded, or after it was dead-lettered: a failing handler is retried
    ``max_retries`` times (delays from ``retry_backoff`` up to ``max_retry_delay`` seconds),
    then the message is published to the ``dead_letter`` topic as a JSON envelope, or, with no
    ``dead_letter`` topic, logged with its payload at ERROR level. ``client_id`` makes the
    session persistent (``clean_session`` defaults to False then), so that the broker keeps
    the subscriptions and redelivers unacknowledged messages after a crash or a reconnect.
    At most ``max_in_flight`` messages are handled at once. The connection is retried with
    backoff (``reconnect_backoff`` seconds doubling up to ``max_reconnect_delay``) and the
    subscriptions restored; both are logged on ``tiny_listener.mqtt``. ``shared_group``
    subscribes as ``$share/<group>/<filter>`` so that several processes share the messages.
    """

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        *,
        qos: int = 1,
        codec: Codec | None = None,
        client_id: str | None = None,
        clean_session: bool | None = None,
        max_in_flight: int = 64,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 30.0,
        dead_letter: str | None = None,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
        keepalive: int = 60,
        shared_group: str | None = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(max_event_history=max_event_history, shutdown_timeout=shutdown_timeout)
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        self._set_delivery_settings(
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            reconnect_backoff=reconnect_backoff,
        )
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp"):
            raise ValueError(f"unsupported MQTT url scheme {parts.scheme!r} in {url!r}: use mqtt:// or mqtts://")
        self.url = url
        self.broker_host = parts.hostname or "127.0.0.1"
        self.broker_port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._tls = parts.scheme == "mqtts"
        self.qos = qos
        self.codec = codec
        self.client_id = client_id
        self.clean_session = (client_id is None) if clean_session is None else clean_session
        self.max_retry_delay = max_retry_delay
        self.dead_letter = dead_letter
        self.max_reconnect_delay = max_reconnect_delay
        self.keepalive = keepalive
        self.shared_group = shared_group
        self.connection_count = 0
        """How many times a connection was made and subscribed (1 after the first)."""

        self._client: aiomqtt.Client | None = None
        self._connection_waiters: List[Tuple[int, asyncio.Future[None]]] = []
        self._slots: asyncio.Semaphore | None = None
        self._handling = 0
        self._settled: asyncio.Event | None = None
        self._stopped = False  # listen() ended: no connection will come any more

    # ------------------------------------------------------------------ public helpers

    def subscriptions(self) -> List[Tuple[str, int]]:
        """Return the ``(filter, qos)`` pairs the routes need, as the listener subscribes.

        Raises :class:`~tiny_listener.mqtt.TopicFilterError` for a route without a filter.
        """
        pairs = subscriptions(self.routes.values(), self.qos)
        if self.shared_group:
            pairs = [(f"$share/{self.shared_group}/{topic_filter}", qos) for topic_filter, qos in pairs]
        return pairs

    @property
    def is_connected(self) -> bool:
        """True while the listener has a subscribed broker connection."""
        return self._client is not None

    async def wait_connected(self, count: int = 1) -> None:
        """Return once the listener has connected and subscribed ``count`` times in all (2
        after the first reconnect); returns at once if it already has and is connected."""
        if self.connection_count >= count and self._client is not None:
            return
        future = asyncio.get_running_loop().create_future()
        self._connection_waiters.append((count, future))
        try:
            await future
        finally:
            self._connection_waiters = [(n, f) for n, f in self._connection_waiters if f is not future]

    async def publish(
        self, topic: str, data: Any, *, qos: int | None = None, retain: bool = False, timeout: float = 10.0
    ) -> None:
        """Publish ``data`` to ``topic``: bytes and str as they are, anything else encoded by
        the listener's codec (raw bytes without one). With QoS 1 or 2 it returns once the
        broker acknowledged it. Waits up to ``timeout`` seconds for a connection.

        Raises :class:`NotConnected` if there is none by then, ``aiomqtt.MqttError`` if the
        broker does not take the message, and what the codec raises for data it cannot encode.
        """
        if isinstance(data, (bytes, bytearray, str)):
            payload: bytes | str = bytes(data) if isinstance(data, bytearray) else data
        else:
            payload = (self.codec or RawCodec()).encode(data)
        client = self._client
        if client is None and self._stopped:
            raise NotConnected(f"the listener has stopped: no connection to {self.url} to publish on {topic!r}")
        if client is None:
            try:
                await asyncio.wait_for(self.wait_connected(), timeout)
            except asyncio.TimeoutError:
                raise NotConnected(f"no connection to {self.url} to publish on {topic!r}") from None
            client = self._client
            if client is None:
                raise NotConnected(f"no connection to {self.url} to publish on {topic!r}")
        await client.publish(topic, payload, qos=self.qos if qos is None else qos, retain=retain, timeout=timeout)

    # ------------------------------------------------------------------ connection loop

    async def listen(self) -> None:
        """Connect, subscribe and handle messages until cancelled, reconnecting with backoff.

        Raises :class:`~tiny_listener.mqtt.TopicFilterError` at once for a route that has no
        topic filter, and ``ValueError`` if there is no route at all.
        """
        mqtt = require("aiomqtt", extra="mqtt")
        pairs = self.subscriptions()
        if not pairs:
            raise ValueError("MQTTListener has no route to subscribe to; register handlers with @app.on_event(topic)")
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._settled = asyncio.Event()
        self._settled.set()
        delays = self._reconnect_delays()
        self._stopped = False
        client: aiomqtt.Client | None = None
        try:
            while True:
                candidate = self._new_client(mqtt)
                try:
                    await candidate.__aenter__()
                except mqtt.MqttError as exc:
                    delay = next(delays)
                    logger.warning("cannot connect to MQTT broker %s: %s; retrying in %.1fs", self.url, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                client = candidate
                try:
                    await client.subscribe(pairs)
                    self._connected(client, pairs)
                    delays = self._reconnect_delays()
                    await self._consume(client)
                except mqtt.MqttError as exc:
                    self._client = None
                    delay = next(delays)
                    logger.warning("lost MQTT broker %s: %s; reconnecting in %.1fs", self.url, exc, delay)
                    await _disconnect(client, mqtt)
                    client = None
                    await asyncio.sleep(delay)
        finally:
            self._stopped = True
            # The connection stays until in-flight messages are acknowledged; shutdown waits
            # for this task as for an event.
            self.spawn(self._finish(client, mqtt), drain=True, name="MQTTListener.finish")

    async def _consume(self, client: aiomqtt.Client) -> None:
        """Start an event per message until the connection drops (``MqttError``)."""
        messages = client.messages
        while True:
            await self._start_next(client, messages)

    async def _start_next(self, client: aiomqtt.Client, messages: AsyncIterator[aiomqtt.Message]) -> None:
        """Wait for a free slot, then for the next message, and start its event."""
        assert self._slots is not None
        # A slot first, then a message: a message is never held while waiting, so a
        # cancellation here leaves it in the client's queue for the shutdown to handle.
        await self._slots.acquire()
        try:
            message = await messages.__anext__()
        except BaseException:
            self._slots.release()
            raise
        self._start(client, message)

    def _new_client(self, mqtt: Any) -> aiomqtt.Client:
        client: aiomqtt.Client = mqtt.Client(
            self.broker_host,
            self.broker_port,
            username=self._username,
            password=self._password,
            identifier=self.client_id or f"tiny-listener-{uuid.uuid4().hex[:12]}",
            clean_session=self.clean_session,
            keepalive=self.keepalive,
            tls_context=ssl.create_default_context() if self._tls else None,
            logger=logging.getLogger("tiny_listener.mqtt.client"),
        )
        # Acknowledge QoS 1/2 messages after their handler, not on receipt. aiomqtt does not
        # expose paho's manual acknowledgements yet (empicano/aiomqtt#345), hence ``_client``.
        client._client.manual_ack_set(True)
        return client

    def _connected(self, client: aiomqtt.Client, pairs: List[Tuple[str, int]]) -> None:
        self._client = client
        self.connection_count += 1
        filters = ", ".join(f"{topic_filter} (QoS {qos})" for topic_filter, qos in pairs)
        if self.connection_count == 1:
            logger.info("connected to MQTT broker %s, subscribed to %s", self.url, filters)
        else:
            logger.warning("reconnected to MQTT broker %s, subscribed again to %s", self.url, filters)
        for count, future in self._connection_waiters:
            if count <= self.connection_count and not future.done():
                future.set_result(None)

    async def _finish(self, client: aiomqtt.Client | None, mqtt: Any) -> None:
        """At shutdown: handle what the client already received, wait for in-flight messages
        to be acknowledged (or retried, or dead-lettered), then disconnect."""
        try:
            if client is not None and self._client is client:
                await self._take_received(client, mqtt)
            if self._settled is not None:
                await self._settled.wait()
        finally:
            self._client = None
            if client is not None:
                await _disconnect(client, mqtt)
                logger.info("disconnected from MQTT broker %s", self.url)

    async def _take_received(self, client: aiomqtt.Client, mqtt: Any) -> None:
        if self.clean_session:
            # The session ends with this connection: stop the flow, then handle all that came.
            try:
                await client.unsubscribe([topic_filter for topic_filter, _ in self.subscriptions()])
            except mqtt.MqttError as exc:
                logger.warning("could not unsubscribe from %s at shutdown: %s", self.url, exc)
        # A persistent session keeps its subscriptions (messages sent while we are away wait
        # for us); what arrives after this snapshot is redelivered (QoS 1) or lost (QoS 0).
        messages = client.messages
        received = len(messages)
        if received:
            logger.info("handling %d MQTT message(s) received before shutdown", received)
        try:
            for _ in range(received):
                await self._start_next(client, messages)
        except mqtt.MqttError as exc:  # the connection dropped meanwhile: the rest is the broker's
            logger.warning("lost MQTT broker %s during shutdown: %s", self.url, exc)

    # ------------------------------------------------------------------ one message

    def _start(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Start the event of ``message``. The common case costs one task, the event's own:
        its done-callback acknowledges; only failures spawn a task (retries, dead letters)."""
        self._handling += 1
        assert self._settled is not None
        self._settled.clear()
        payload = _payload_bytes(message.payload)
        try:
            data = payload_to_data(payload, self.codec)
        except DecodeError as exc:
            self._settle_later(client, message, self._give_up(message, payload, deadletter.UNDECODABLE, exc, 0))
            return
        try:
            task = self._trigger(message, data)
        except EventNotFound as exc:
            self._settle_later(client, message, self._give_up(message, payload, deadletter.NO_ROUTE, exc, 0))
            return
        task.add_done_callback(functools.partial(self._event_done, client, message, payload, data))

    def _trigger(self, message: aiomqtt.Message, data: EventData) -> asyncio.Task[Any]:
        ctx = self.new_ctx(scope={"message": message})
        try:
            return ctx.trigger_event(message.topic.value, data=data)
        except EventNotFound:
            ctx.drop()  # it ran no event, so nothing would release it
            raise

    def _event_done(
        self, client: aiomqtt.Client, message: aiomqtt.Message, payload: bytes, data: EventData, task: asyncio.Task[Any]
    ) -> None:
        if task.cancelled():
            # Cancelled at the shutdown deadline: left unacknowledged, for redelivery.
            self._release()
            return
        error = task.exception()  # already logged by the core, with the handler's name
        if error is None:
            self._ack(client, message)
            self._release()
            return
        self._settle_later(client, message, self._retry(message, payload, data, error))

    def _settle_later(self, client: aiomqtt.Client, message: aiomqtt.Message, work: Coroutine[Any, Any, bool]) -> None:
        self.spawn(self._settle(client, message, work), drain=True, name=f"mqtt message {message.mid}")

    async def _settle(self, client: aiomqtt.Client, message: aiomqtt.Message, work: Coroutine[Any, Any, bool]) -> None:
        try:
            if await work:
                self._ack(client, message)
        finally:
            self._release()

    def _release(self) -> None:
        assert self._slots is not None and self._settled is not None
        self._slots.release()
        self._handling -= 1
        if self._handling == 0:
            self._settled.set()

    async def _retry(self, message: aiomqtt.Message, payload: bytes, data: EventData, error: BaseException) -> bool:
        """Run the event again after its first attempt failed with ``error``; return True once
        the message may be acknowledged (handled, or given up on), False to leave it to the
        broker."""
        topic = message.topic.value
        attempt = 1
        while attempt <= self.max_retries:
            delay = retry_delay(attempt, initial=self.retry_backoff, maximum=self.max_retry_delay)
            total = self.max_retries + 1
            logger.warning("message on %r failed (attempt %d of %d); retrying in %.2fs", topic, attempt, total, delay)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._trigger(message, data)
                return True
            except EventNotFound as exc:  # the routes changed meanwhile
                return await self._give_up(message, payload, deadletter.NO_ROUTE, exc, attempt - 1)
            except Exception as exc:  # logged by the core
                error = exc
        return await self._give_up(message, payload, deadletter.HANDLER_FAILED, error, attempt)

    async def _give_up(
        self, message: aiomqtt.Message, payload: bytes, reason: str, error: BaseException, attempts: int
    ) -> bool:
        topic = message.topic.value
        if self.dead_letter is None:
            shown = base64.b64encode(payload[:MAX_LOGGED_PAYLOAD]).decode("ascii")
            logger.error(
                "giving up on message on %r (%s after %d attempt(s): %s); no dead_letter topic, so it is "
                "acknowledged and logged here: payload %d bytes, base64%s: %s",
                topic,
                reason,
                attempts,
                deadletter.error_text(error),
                len(payload),
                "" if len(payload) <= MAX_LOGGED_PAYLOAD else f" (first {MAX_LOGGED_PAYLOAD} bytes)",
                shown,
            )
            return True
        letter = deadletter.envelope(
            topic, payload, reason=reason, error=error, attempts=attempts, qos=message.qos, retain=message.retain
        )
        try:
            await self.publish(self.dead_letter, letter, qos=1)
        except Exception as exc:
            logger.error(
                "could not dead-letter message on %r (%s) to %r: %r; left unacknowledged for redelivery",
                topic,
                reason,
                self.dead_letter,
                exc,
            )
            return False
        logger.warning("dead-lettered message on %r to %r: %s", topic, self.dead_letter, reason)
        return True

    def _ack(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        if message.qos == 0:
            return
        if client is not self._client:
            # paho would queue the PUBACK on a dead connection without a word; the broker
            # resends the message on the next connection of a persistent session instead.
            logger.info(
                "message %d on %r handled after its connection was lost: not acknowledged, the broker "
                "redelivers it if the session is persistent",
                message.mid,
                message.topic.value,
            )
            return
        rc = client._client.ack(message.mid, message.qos)
        if rc != 0:
            logger.warning("could not acknowledge message %d on %r (rc=%s)", message.mid, message.topic.value, rc)


def _payload_bytes(payload: Any) -> bytes:
    # aiomqtt types the payload loosely; paho always gives bytes for a received message.
    if isinstance(payload, bytes):
        return payload
    return bytes(payload) if isinstance(payload, bytearray) else str(payload).encode()


async def _disconnect(client: aiomqtt.Client, mqtt: Any) -> None:
    try:
        await client.__aexit__(None, None, None)
    except mqtt.MqttError as exc:
        logger.debug("disconnect from MQTT broker: %s", exc)
