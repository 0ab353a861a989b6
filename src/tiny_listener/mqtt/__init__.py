"""MQTT: subscribe to topic filters derived from the routes; each message is an event.

Needs the ``mqtt`` extra (``pip install 'tiny-listener[mqtt]'``, which installs aiomqtt);
importing this package does not import aiomqtt, starting the listener does. See ``docs/mqtt.md``.
"""

from __future__ import annotations

from ..sources.broker import NotConnected as NotConnected
from .deadletter import open_envelope as open_envelope
from .listener import MQTTListener as MQTTListener
from .source import MQTTMessage as MQTTMessage
from .source import MQTTSource as MQTTSource
from .source import payload_to_data as payload_to_data
from .topics import TopicFilterError as TopicFilterError
from .topics import covers as covers
from .topics import route_filter as route_filter
from .topics import subscriptions as subscriptions

__all__ = (
    "covers",
    "MQTTListener",
    "MQTTMessage",
    "MQTTSource",
    "NotConnected",
    "open_envelope",
    "payload_to_data",
    "route_filter",
    "subscriptions",
    "TopicFilterError",
)
