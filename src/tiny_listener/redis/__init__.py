"""Redis Streams: worker processes sharing one flow of events, at-least-once.

    from tiny_listener.redis import RedisStreamListener

    app = RedisStreamListener(url="redis://127.0.0.1:6379/0", streams=["orders"], group="billing")

or, in a listener that has other sources too, ``app.add_source(RedisStreamSource(...))``.

Publish with :class:`RedisPublisher` or :func:`publish`; inspect and replay dead letters with
:func:`read_dead_letters` and :func:`replay_dead_letters`. Needs ``pip install 'tiny-listener[redis]'``.
"""

from __future__ import annotations

from ._config import DEFAULT_DEAD_LETTER as DEFAULT_DEAD_LETTER
from ._config import DEFAULT_GROUP as DEFAULT_GROUP
from ._config import DEFAULT_URL as DEFAULT_URL
from ._config import OrderKey as OrderKey
from ._config import default_consumer_name as default_consumer_name
from ._message import DeadLetter as DeadLetter
from .dead_letters import read_dead_letters as read_dead_letters
from .dead_letters import replay_dead_letters as replay_dead_letters
from .listener import RedisStreamListener as RedisStreamListener
from .publisher import RedisPublisher as RedisPublisher
from .publisher import publish as publish
from .source import RedisStreamConfig as RedisStreamConfig
from .source import RedisStreamMessage as RedisStreamMessage
from .source import RedisStreamSource as RedisStreamSource

__all__ = (
    "DeadLetter",
    "DEFAULT_DEAD_LETTER",
    "DEFAULT_GROUP",
    "DEFAULT_URL",
    "default_consumer_name",
    "OrderKey",
    "publish",
    "read_dead_letters",
    "RedisPublisher",
    "RedisStreamConfig",
    "RedisStreamListener",
    "RedisStreamMessage",
    "RedisStreamSource",
    "replay_dead_letters",
)
