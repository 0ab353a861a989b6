"""NATS JetStream listener (``pip install 'tiny-listener[nats]'``, built on nats-py).

See :class:`NATSListener` (a listener hosting one :class:`NATSSource`) and ``docs/nats.md``.
nats-py is imported when the listener connects, so importing this package works without it.
"""

from __future__ import annotations

from ..sources.broker import NotConnected as NotConnected
from ._subjects import ATTEMPT as ATTEMPT
from ._subjects import DEAD_LETTER_REASON as DEAD_LETTER_REASON
from ._subjects import EVENT_PATH as EVENT_PATH
from ._subjects import LAST_ERROR as LAST_ERROR
from ._subjects import route_subject as route_subject
from .listener import NATSListener as NATSListener
from .source import DEFAULT_URL as DEFAULT_URL
from .source import NATSMessage as NATSMessage
from .source import NATSSource as NATSSource

__all__ = (
    "ATTEMPT",
    "DEAD_LETTER_REASON",
    "DEFAULT_URL",
    "EVENT_PATH",
    "LAST_ERROR",
    "NATSListener",
    "NATSMessage",
    "NATSSource",
    "NotConnected",
    "route_subject",
)
