"""MQTT on the one broker delivery flow: topic filters derived from the routes, subscribed with
aiomqtt; every message becomes an event (see :mod:`tiny_listener.sources.broker` for the flow).

What is MQTT's own is here: connecting and subscribing (again after every reconnect), taking
received messages from aiomqtt's queue, QoS 1/2 acknowledgements sent by hand after the
handler, retries in this process (MQTT cannot redeliver later), dead letters as JSON envelopes
(:mod:`.deadletter`), and what happens to received messages when the connection is lost or
intake stops (MQTT cannot hand a message back to the broker).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import uuid
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple, Type
from urllib.parse import unquote, urlsplit

from .. import delivery
from .._types import EventData, Scope
from ..codecs import Codec, RawCodec
from ..delivery import HANDLER_FAILED
from ..optional import require
from ..sources._broker_log import BrokerLog
from ..sources.base import SourceState
from ..sources.broker import BrokerMessage, BrokerSource, NotConnected, safe_url
from ..wildcards import message_routes
from . import deadletter
from .topics import subscriptions

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger("tiny_listener.mqtt")

DEFAULT_URL = "mqtt://127.0.0.1:1883"

# A dead letter without a dead-letter topic is logged with its payload, up to this size.
MAX_LOGGED_PAYLOAD = 4096

# How long one receive waits for a first message; also how soon an idle consumer notices
# that intake stopped, should the draining state not wake it.
RECEIVE_WAIT = 1.0


def payload_to_data(payload: bytes, codec: Codec | None) -> EventData:
    """Return the event data of a payload: ``{"payload": payload}`` without a codec; with one,
    the decoded value, which is the data itself if it is a mapping and ``{"payload": value}``
    otherwise. Raises :class:`~tiny_listener.codecs.DecodeError` if the codec cannot decode."""
    if codec is None:
        return {"payload": payload}
    return delivery.payload_to_data(payload, codec)


class MQTTMessage(BrokerMessage):
    """A received MQTT message: its topic is the event path, its packet id the message id; MQTT
    counts no deliveries, so ``attempt`` starts at 1 and the flow counts retries in process."""

    __slots__ = ("client", "message", "source")

    def __init__(self, message: aiomqtt.Message, client: aiomqtt.Client, source: MQTTSource) -> None:
        # BrokerMessage's attributes, set here directly: this runs for every message.
        self.path = message.topic.value
        self.payload = _payload_bytes(message.payload)
        self.attempt = 1
        self.message_id = message.mid
        self.message = message
        self.client = client  # the connection it came on: acknowledgements go back on it only
        self.source = source

    def scope(self) -> Scope:
        return {"message": self.message, "attempt": self.attempt}

    async def ack(self) -> None:
        """Send PUBACK (QoS 1) or PUBCOMP (QoS 2); nothing for QoS 0."""
        message = self.message
        if message.qos == 0:
            return
        if self.client is not self.source._client:
            # paho would queue the PUBACK on a dead connection without a word; the broker
            # resends the message on the next connection of a persistent session instead.
            logger.info(
                "message %d on %r handled after its connection was lost: not acknowledged, the broker "
                "redelivers it if the session is persistent",
                message.mid,
                self.path,
            )
            return
        rc = self.client._client.ack(message.mid, message.qos)
        if rc != 0:
            logger.warning("could not acknowledge message %d on %r (rc=%s)", message.mid, self.path, rc)

    async def release(self, delay: float = 0.0) -> None:
        """MQTT cannot hand a message back: it stays unacknowledged, and the broker sends it
        again on the next connection of a persistent session (QoS 1)."""

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> None:
        """Publish the JSON envelope of the message to ``target`` at QoS 1."""
        message = self.message
        attempts = self.attempt if reason == HANDLER_FAILED else 0  # the others never ran
        letter = deadletter.envelope(
            self.path,
            self.payload,
            reason=reason,
            error=error,
            attempts=attempts,
            qos=message.qos,
            retain=message.retain,
        )
        await self.source.publish(target, letter, qos=1)


class MQTTLog(BrokerLog):
    """The flow's log lines, and MQTT's own line for a message given up on without a
    dead-letter topic: MQTT keeps nothing for a topic nobody subscribes to, so the payload is
    logged with it."""

    def dropped(
        self, message: BrokerMessage, reason: str, error: BaseException, handler: str | None, attempts: int
    ) -> None:
        payload = message.payload
        tried = message.attempt if reason == HANDLER_FAILED else 0
        self.logger.error(
            "%s; no dead_letter topic, so it is acknowledged and logged here (%s after %d attempt(s)): "
            "payload %d bytes, base64%s: %s",
            self._failure(message, reason, error, handler, attempts),
            reason,
            tried,
            len(payload),
            "" if len(payload) <= MAX_LOGGED_PAYLOAD else f" (first {MAX_LOGGED_PAYLOAD} bytes)",
            base64.b64encode(payload[:MAX_LOGGED_PAYLOAD]).decode("ascii"),
            exc_info=error if reason == HANDLER_FAILED else None,
            extra=self._fields(message, reason),
        )


class MQTTSource(BrokerSource):
    """Subscribe to the topic filters of the listener's routes and run an event per message.
    See :class:`~tiny_listener.mqtt.MQTTListener` for the behaviour, and
    :class:`~tiny_listener.sources.broker.BrokerSource` for the settings shared by every broker.
    ``dead_letter=True`` dead-letters to the topic ``deadletter``; the default (None) logs a
    given-up message with its payload at ERROR level.
    """

    kind = "mqtt"
    broker = "MQTT broker"
    url_schemes = ("mqtt", "mqtts", "tcp")
    url_form = "mqtt://[user:password@]host[:port] (mqtts:// for TLS)"
    client_loggers = ("tiny_listener.mqtt.client",)
    redelivers_retries = False  # MQTT cannot deliver a message again later: retry in process
    receive_in_batches = False  # receiving reads aiomqtt's queue, no round trip: fill each free slot

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        qos: int = 1,
        codec: Codec | None = None,
        client_id: str | None = None,
        clean_session: bool | None = None,
        max_in_flight: int = 64,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = None,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
        keepalive: int = 60,
        shared_group: str | None = None,
        name: str | None = None,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        super().__init__(
            url,
            name=name,
            codec=codec if codec is not None else RawCodec(),
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            max_retry_delay=max_retry_delay,
            dead_letter=dead_letter,
            reconnect_backoff=reconnect_backoff,
            max_reconnect_delay=max_reconnect_delay,
        )
        self.log = MQTTLog(logger, self.broker, safe_url(url))
        parts = urlsplit(url)
        self.broker_host = parts.hostname or "127.0.0.1"
        self.broker_port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._tls = parts.scheme == "mqtts"
        self.qos = qos
        self.client_id = client_id
        self.clean_session = (client_id is None) if clean_session is None else clean_session
        self.keepalive = keepalive
        self.shared_group = shared_group
        self.connection_count = 0
        """How many times a connection was made and subscribed (1 after the first)."""
        self._client: aiomqtt.Client | None = None  # connected and subscribed
        self._connecting: aiomqtt.Client | None = None  # made by connect(), for disconnect()
        self._left_over: List[MQTTMessage] = []  # received on a lost connection, to start still
        self._intake_stopping: asyncio.Future[None] | None = None
        self._stopped = False  # intake stopped: no connection will come any more

    # ------------------------------------------------------------------ public helpers

    def subscriptions(self) -> List[Tuple[str, int]]:
        """Return the ``(filter, qos)`` pairs the routes need, as the source subscribes (HTTP
        routes aside: an HTTP source hosted by the same listener serves those).

        Raises :class:`~tiny_listener.mqtt.TopicFilterError` for a route without a filter.
        """
        pairs = subscriptions(message_routes(self.listener.routes.values()), self.qos)
        if self.shared_group:
            pairs = [(f"$share/{self.shared_group}/{topic_filter}", qos) for topic_filter, qos in pairs]
        return pairs

    async def wait_connected(self, count: int = 1) -> None:
        """Return once the source has connected and subscribed ``count`` times in all (2
        after the first reconnect); returns at once if it already has and is connected."""
        while not (self.ready and self.connection_count >= count):
            if self.ready:  # connected, but not as often yet: wait for the next connection
                await self.wait_state(SourceState.STARTING, SourceState.RECONNECTING, SourceState.DRAINING)
            else:
                await self.wait_state(SourceState.READY)

    async def publish(
        self, topic: str, data: Any = None, *, qos: int | None = None, retain: bool = False, timeout: float = 10.0
    ) -> None:
        """Publish ``data`` to ``topic``: bytes and str as they are, anything else encoded by
        the codec (raw bytes without one). With QoS 1 or 2 it returns once the broker
        acknowledged it. Waits up to ``timeout`` seconds for a connection.

        Raises :class:`NotConnected` if there is none by then, ``aiomqtt.MqttError`` if the
        broker does not take the message, and what the codec raises for data it cannot encode.
        """
        if isinstance(data, (bytes, bytearray, str)):
            payload: bytes | str = bytes(data) if isinstance(data, bytearray) else data
        else:
            payload = self.codec.encode(data)
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

    def set_state(self, state: SourceState) -> None:
        super().set_state(state)
        stopping = self._intake_stopping
        if state is SourceState.DRAINING and stopping is not None and not stopping.done():
            stopping.set_result(None)  # an idle receive returns at once, holding no message

    # ------------------------------------------------------------------ the broker's part of the flow

    def connection_errors(self) -> Tuple[Type[BaseException], ...]:
        mqtt = require("aiomqtt", extra="mqtt")
        return (OSError, asyncio.TimeoutError, mqtt.MqttError)

    def intake(self) -> str:
        return ", ".join(f"{topic_filter} (QoS {qos})" for topic_filter, qos in self.subscriptions())

    def default_dead_letter_target(self) -> str:
        return "deadletter"

    async def connect(self) -> None:
        """Connect (a new client each time) and subscribe to the routes' filters: again on
        every connection, since a broker may have lost the session (and Mosquitto before
        2.0.12 does not restore the ``$share`` subscriptions of a persistent one)."""
        mqtt = require("aiomqtt", extra="mqtt")
        pairs = self.subscriptions()
        if not pairs:
            raise ValueError("MQTTListener has no route to subscribe to; register handlers with @app.on_event(topic)")
        if self._intake_stopping is None:
            self._intake_stopping = asyncio.get_running_loop().create_future()
        client = self._new_client(mqtt)
        await client.__aenter__()
        self._connecting = client
        await client.subscribe(pairs)
        lost = _lost(client)

        def say_lost(_: object) -> None:
            if self._client is client:
                self.connection_lost(_connection_lost(lost))

        lost.add_done_callback(say_lost)
        self._client = client
        self.connection_count += 1

    async def receive(self, max_messages: int) -> Sequence[MQTTMessage]:
        """Return up to ``max_messages`` received messages (those left over from a lost
        connection first), waiting up to ``RECEIVE_WAIT`` for the first; raise ``MqttError``
        once the connection is lost."""
        client = self._client
        if client is None:
            raise NotConnected(f"not connected to {self.log.url}")
        received = self._left_over[:max_messages]
        del self._left_over[: len(received)]
        queue = _queue(client)
        lost = _lost(client)
        if not received and queue.empty() and not lost.done():
            first = await self._first_message(queue, lost)
            if first is not None:
                received.append(MQTTMessage(first, client, self))
        if lost.done():
            self._left_over[:0] = received
            raise _connection_lost(lost)
        while len(received) < max_messages and not queue.empty():
            received.append(MQTTMessage(queue.get_nowait(), client, self))
        return received

    async def _first_message(
        self, queue: asyncio.Queue[aiomqtt.Message], lost: asyncio.Future[None]
    ) -> aiomqtt.Message | None:
        """The next message of ``queue``; None if the connection is lost, intake stops, or
        none came within ``RECEIVE_WAIT``."""
        stopping = self._intake_stopping
        assert stopping is not None
        if stopping.done():
            return None
        getting = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait((getting, lost, stopping), timeout=RECEIVE_WAIT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()  # the queue keeps the message for the next getter
        return getting.result() if getting.done() and not getting.cancelled() else None

    async def disconnect(self) -> None:
        """Close the connection. What a lost connection received that no handler started yet:
        the messages the broker sends again (QoS 1, persistent session) are left to it, since
        started now they could not be acknowledged and would run twice; the others (QoS 0, 2,
        a clean session) are started after the reconnect, since nothing would send them again."""
        client, self._client, self._connecting = self._connecting, None, None
        if client is None:
            return
        lost = _lost(client)
        if lost.done():
            self._leave_received(client)
        try:
            await client.__aexit__(None, None, None)
        except self.connection_errors() as exc:
            logger.debug("disconnect from MQTT broker: %r", exc)
        if lost.done() and not lost.cancelled():
            lost.exception()  # retrieved: the flow logged the loss

    def _leave_received(self, client: aiomqtt.Client) -> None:
        queue = _queue(client)
        redelivered = 0
        kept = [message for message in self._left_over if not self._redelivered(message.message)]
        redelivered += len(self._left_over) - len(kept)
        while not queue.empty():
            message = queue.get_nowait()
            if self._redelivered(message):
                redelivered += 1
            else:
                kept.append(MQTTMessage(message, client, self))
        self._left_over = kept
        if redelivered:
            logger.info(
                "%d MQTT message(s) received on the lost connection were not started: the broker sends them again",
                redelivered,
            )

    def _redelivered(self, message: aiomqtt.Message) -> bool:
        """True if the broker sends ``message`` again on the next connection when it is not
        acknowledged on this one: QoS 1 in a persistent session. (After PUBREC the broker
        resends a QoS 2 message's PUBREL, never the message, and a clean session ends with
        its connection.)"""
        return message.qos == 1 and not self.clean_session

    async def stop_receiving(self) -> None:
        """Intake stops at shutdown. With a clean session, unsubscribe first (the session ends
        with the connection, so nothing should arrive any more); then handle every message
        received so far, as slots free up: MQTT cannot hand them back. With a persistent
        session what arrives later is the broker's (redelivered at QoS 1, lost at QoS 0)."""
        self._stopped = True
        client = self._client
        if client is not None and self.clean_session:
            mqtt = require("aiomqtt", extra="mqtt")
            try:
                await client.unsubscribe([topic_filter for topic_filter, _ in self.subscriptions()])
            except mqtt.MqttError as exc:
                logger.warning("could not unsubscribe from %s at shutdown: %s", self.log.url, exc)
        received, self._left_over = self._left_over, []  # from a lost connection, if any
        if client is not None:
            queue = _queue(client)
            while not queue.empty():
                received.append(MQTTMessage(queue.get_nowait(), client, self))
        if received:
            logger.info("handling %d MQTT message(s) received before shutdown", len(received))
            self.listener.spawn(self.deliver_received(received), drain=True, name=f"{self.name} received at shutdown")

    async def close(self) -> None:
        self._stopped = True
        await super().close()

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


# aiomqtt keeps these private. Its message iterator takes one message per call with a task and
# a wait each, and keeps handing out what a lost connection received; the queue and the
# disconnect future let the source take a batch at once and see the loss when it happens.


def _queue(client: aiomqtt.Client) -> asyncio.Queue[aiomqtt.Message]:
    """The queue aiomqtt puts received messages in."""
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    return queue


def _lost(client: aiomqtt.Client) -> asyncio.Future[None]:
    """The future aiomqtt completes when the connection of ``client`` ends."""
    lost: asyncio.Future[None] = client._disconnected
    return lost


def _connection_lost(lost: asyncio.Future[None]) -> Exception:
    """The ``MqttError`` that says the connection ended (with the future's error as cause)."""
    from aiomqtt import MqttError

    error = MqttError("Disconnected during message iteration")
    error.__cause__ = None if lost.cancelled() else lost.exception()
    return error


def _payload_bytes(payload: Any) -> bytes:
    # aiomqtt types the payload loosely; paho always gives bytes for a received message.
    if isinstance(payload, bytes):
        return payload
    return bytes(payload) if isinstance(payload, bytearray) else str(payload).encode()
