"""MQTT listener: a listener hosting one :class:`~tiny_listener.mqtt.MQTTSource`.

Everything MQTT does is in :mod:`.source`, on the one broker delivery flow
(:mod:`tiny_listener.sources.broker`); this class keeps the constructor and attributes that
code written for it uses.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from ..codecs import Codec
from ..context import Context
from ..sources._attribute import SourceAttribute
from ..sources.broker_listener import BrokerListener
from .source import DEFAULT_URL, MQTTSource


class MQTTListener(BrokerListener[Context, MQTTSource]):
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

    ``app.source`` is the :class:`~tiny_listener.mqtt.MQTTSource` doing all this; the settings
    are attributes of both. Raises ``ValueError`` for a URL that is not an MQTT URL.
    """

    # MQTT's settings; those of every broker (url, codec, max_in_flight...) are BrokerListener's.
    broker_host: SourceAttribute[str] = SourceAttribute()
    broker_port: SourceAttribute[int] = SourceAttribute()
    _username: SourceAttribute[str | None] = SourceAttribute()
    _password: SourceAttribute[str | None] = SourceAttribute()
    qos: SourceAttribute[int] = SourceAttribute()
    client_id: SourceAttribute[str | None] = SourceAttribute()
    clean_session: SourceAttribute[bool] = SourceAttribute()
    keepalive: SourceAttribute[int] = SourceAttribute()
    shared_group: SourceAttribute[str | None] = SourceAttribute()
    connection_count: SourceAttribute[int] = SourceAttribute()

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
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(
            MQTTSource(
                url,
                qos=qos,
                codec=codec,
                client_id=client_id,
                clean_session=clean_session,
                max_in_flight=max_in_flight,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                max_retry_delay=max_retry_delay,
                dead_letter=dead_letter,
                reconnect_backoff=reconnect_backoff,
                max_reconnect_delay=max_reconnect_delay,
                keepalive=keepalive,
                shared_group=shared_group,
            ),
            max_event_history=max_event_history,
            shutdown_timeout=shutdown_timeout,
        )

    def subscriptions(self) -> List[Tuple[str, int]]:
        """Return the ``(filter, qos)`` pairs the routes need, as the listener subscribes.

        Raises :class:`~tiny_listener.mqtt.TopicFilterError` for a route without a filter.
        """
        return self.source.subscriptions()

    @property
    def is_connected(self) -> bool:
        """True while the listener has a subscribed broker connection (as ``connected``)."""
        return self.source.connected

    async def wait_connected(self, count: int = 1) -> None:
        """Return once the listener has connected and subscribed ``count`` times in all (2
        after the first reconnect); returns at once if it already has and is connected."""
        await self.source.wait_connected(count)

    async def publish(
        self, topic: str, data: Any, *, qos: int | None = None, retain: bool = False, timeout: float = 10.0
    ) -> None:
        """Publish ``data`` to ``topic``: bytes and str as they are, anything else encoded by
        the listener's codec (raw bytes without one). With QoS 1 or 2 it returns once the
        broker acknowledged it. Waits up to ``timeout`` seconds for a connection.

        Raises :class:`~tiny_listener.mqtt.NotConnected` if there is none by then,
        ``aiomqtt.MqttError`` if the broker does not take the message, and what the codec
        raises for data it cannot encode.
        """
        await self.source.publish(topic, data, qos=qos, retain=retain, timeout=timeout)
