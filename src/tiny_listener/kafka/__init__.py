"""Kafka listener and source (``pip install 'tiny-listener[kafka]'``, built on aiokafka).

See :class:`KafkaListener`, :class:`KafkaSource` and ``docs/kafka.md``. aiokafka is imported
when the source connects, so importing this package works without it.
"""

from __future__ import annotations

from ..delivery import ATTEMPT as ATTEMPT
from ..delivery import DEAD_LETTER_REASON as DEAD_LETTER_REASON
from ..delivery import EVENT_PATH as EVENT_PATH
from ..delivery import LAST_ERROR as LAST_ERROR
from ..sources.broker import NotConnected as NotConnected
from ._topics import ORIGINAL_KEY as ORIGINAL_KEY
from ._topics import ORIGINAL_OFFSET as ORIGINAL_OFFSET
from ._topics import ORIGINAL_PARTITION as ORIGINAL_PARTITION
from ._topics import ORIGINAL_TOPIC as ORIGINAL_TOPIC
from ._topics import SubscriptionError as SubscriptionError
from .listener import KafkaListener as KafkaListener
from .source import DEFAULT_URL as DEFAULT_URL
from .source import KafkaMessage as KafkaMessage
from .source import KafkaSource as KafkaSource
from .source import PartitionRevoked as PartitionRevoked

__all__ = (
    "ATTEMPT",
    "DEAD_LETTER_REASON",
    "DEFAULT_URL",
    "EVENT_PATH",
    "LAST_ERROR",
    "ORIGINAL_KEY",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TOPIC",
    "KafkaListener",
    "KafkaMessage",
    "KafkaSource",
    "NotConnected",
    "PartitionRevoked",
    "SubscriptionError",
)
