"""The settings of a Redis Streams listener, checked once when the listener is made.

The parameter names are shared with the other broker listeners: ``url``, ``streams``,
``group``, ``consumer``, ``codec``, ``max_in_flight``, ``max_retries``, ``retry_backoff``,
``dead_letter``, ``claim_idle``, ``reconnect_backoff``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Tuple, Union

from ..codecs import Codec, JsonCodec

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GROUP = "tiny-listener"
DEFAULT_DEAD_LETTER = "{stream}:dead"

OrderKey = Callable[[str, Any], Union[Hashable, None]]
"""``order_by`` as a function: ``(event path, event data) -> key``; ``None`` means no ordering."""


def default_consumer_name() -> str:
    """Return ``"<hostname>-<pid>"``: unique per process, readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class RedisStreamConfig:
    """What a :class:`RedisStreamListener` reads, from where, and how it retries.

    - ``url``: the Redis server, as ``redis.asyncio.from_url`` takes it.
    - ``streams``: the stream names to read; ``group``: the consumer group every worker joins
      (created, with the stream, if missing); ``consumer``: this process's name in the group,
      ``"<hostname>-<pid>"`` by default.
    - ``codec``: decodes the ``data`` field (:class:`~tiny_listener.codecs.JsonCodec` by default).
    - ``max_in_flight``: how many messages this process handles at once; it reads no more.
    - ``max_retries``: how many times a failed handler is run again before the message is
      dead-lettered; ``retry_backoff``: seconds before the first retry, doubled each retry.
    - ``dead_letter``: the dead-letter stream, ``{stream}`` standing for the source stream.
    - ``claim_idle``: seconds a message may stay unacknowledged by a consumer before another
      claims it (crash recovery). Messages this process is still handling are kept fresh.
    - ``reconnect_backoff``: seconds before the first reconnect attempt, doubled up to 10 s.
    - ``order_by``: a path parameter or data key name, or an :data:`OrderKey` function; events
      with the same key then run one at a time, in the order they were read.

    Raises ``ValueError`` for a setting out of range.
    """

    url: str = DEFAULT_URL
    streams: Tuple[str, ...] = ("events",)
    group: str = DEFAULT_GROUP
    consumer: str = field(default_factory=default_consumer_name)
    codec: Codec = field(default_factory=JsonCodec)
    max_in_flight: int = 100
    max_retries: int = 3
    retry_backoff: float = 0.5
    dead_letter: str = DEFAULT_DEAD_LETTER
    claim_idle: float = 30.0
    reconnect_backoff: float = 0.2
    order_by: Union[str, OrderKey, None] = None

    def __post_init__(self) -> None:
        if isinstance(self.streams, str):
            object.__setattr__(self, "streams", (self.streams,))
        else:
            object.__setattr__(self, "streams", tuple(self.streams))
        if not self.streams or len(set(self.streams)) != len(self.streams):
            raise ValueError(f"streams must name at least one stream, each once: {self.streams!r}")
        if self.max_in_flight < len(self.streams):
            # XREADGROUP's COUNT applies per stream: each read asks every stream for at least one.
            raise ValueError(
                f"max_in_flight ({self.max_in_flight}) must be at least the number of streams ({len(self.streams)})"
            )
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {self.max_retries}")
        for name in ("retry_backoff", "claim_idle", "reconnect_backoff"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {getattr(self, name)!r}")
        if not self.group or not self.consumer:
            raise ValueError("group and consumer must be non-empty names")

    def dead_letter_stream(self, stream: str) -> str:
        """Return the dead-letter stream of messages read from ``stream``."""
        return self.dead_letter.replace("{stream}", stream)
