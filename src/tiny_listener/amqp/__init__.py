"""RabbitMQ listener (``pip install 'tiny-listener[amqp]'``, built on aio-pika).

See :class:`AMQPListener` (a listener hosting one :class:`AMQPSource`) and ``docs/amqp.md``.
aio-pika is imported when the listener connects, so importing this package works without it.
"""

from __future__ import annotations

from ..sources.broker import NotConnected as NotConnected
from ._headers import ATTEMPT as ATTEMPT
from ._headers import DEAD_LETTER_REASON as DEAD_LETTER_REASON
from ._headers import EVENT_PATH as EVENT_PATH
from ._headers import LAST_ERROR as LAST_ERROR
from ._topology import binding_key as binding_key
from .listener import AMQPListener as AMQPListener
from .source import DEFAULT_URL as DEFAULT_URL
from .source import AMQPMessage as AMQPMessage
from .source import AMQPSource as AMQPSource

__all__ = (
    "AMQPListener",
    "AMQPMessage",
    "AMQPSource",
    "ATTEMPT",
    "binding_key",
    "DEAD_LETTER_REASON",
    "DEFAULT_URL",
    "EVENT_PATH",
    "LAST_ERROR",
    "NotConnected",
)
