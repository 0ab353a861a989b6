"""Redis Streams listener: a listener hosting one :class:`~tiny_listener.redis.RedisStreamSource`.

Everything Redis does is in :mod:`.source`, on the one broker delivery flow
(:mod:`tiny_listener.sources.broker`); this class keeps the constructor and attributes that
code written for it uses.
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple, Union

from ..codecs import Codec
from ..listener import CTXType
from ..sources._attribute import SourceAttribute
from ..sources.broker_listener import BrokerListener
from ._config import DEFAULT_DEAD_LETTER, DEFAULT_GROUP, DEFAULT_URL, OrderKey
from .source import RedisStreamSource


class RedisStreamListener(BrokerListener[CTXType, RedisStreamSource]):
    """Handle the events published to Redis ``streams`` as one consumer of ``group``.

    Start as many processes as wanted, on as many machines: each message is handled by one of
    them, at least once.

    - Every process joins ``group`` (created, with the stream, if missing, at the start of the
      stream) as ``consumer`` (``"<hostname>-<pid>"`` by default) and reads no more messages
      than it has free of ``max_in_flight``. A message is an entry with a ``path`` field (the
      event path) and a ``data`` field decoded by ``codec`` (JSON by default).
    - A message is acknowledged (``XACK``, in batches) only after its handler succeeded. A
      failing handler is run again in this process after ``retry_backoff`` seconds, doubling
      up to ``max_retry_delay``, up to ``max_retries`` times; then the message is moved to the
      ``dead_letter`` stream (``"{stream}:dead"``) and acknowledged in one transaction. A
      message that matches no route or cannot be decoded is dead-lettered at once;
      ``dead_letter=False`` logs such messages as errors and acknowledges them instead.
    - Messages left pending by a consumer that died are claimed (``XAUTOCLAIM``) once idle for
      ``claim_idle`` seconds, their earlier deliveries counting as attempts (one delivered more
      than ``max_retries + 1`` times is dead-lettered, not run); the messages this process is
      still handling are kept fresh so that live work is not claimed away.
    - ``order_by`` (a path parameter or data key name, or a function ``(path, data) -> key``)
      runs the events of one key one at a time, in the order they were read.
    - Redis going away is logged and the group joined again after ``reconnect_backoff``
      seconds, doubling up to ``max_reconnect_delay``; acknowledgements wait for it.
    - At shutdown, reading stops, in-flight messages finish and are acknowledged (up to
      ``shutdown_timeout``); the others stay pending, claimable by other consumers at once.

    A handler sees the message in ``event.ctx.scope``: ``stream``, ``message_id``, ``attempt``
    (1 for the first run) and ``fields``; ``app.redis`` is the listener's Redis client while it
    runs. ``app.source`` is the :class:`~tiny_listener.redis.RedisStreamSource` doing all this
    (``app.config`` too); the settings are attributes of both. Raises ``ValueError`` for a URL
    that is not a Redis URL and for settings out of range.
    """

    # Redis's settings; those of every broker (url, codec, max_in_flight...) are BrokerListener's.
    streams: SourceAttribute[Tuple[str, ...]] = SourceAttribute()
    group: SourceAttribute[str] = SourceAttribute()
    consumer: SourceAttribute[str] = SourceAttribute()
    claim_idle: SourceAttribute[float] = SourceAttribute()
    order_by: SourceAttribute[Union[str, OrderKey, None]] = SourceAttribute()

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        streams: Union[str, Sequence[str]] = ("events",),
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        codec: Codec | None = None,
        max_in_flight: int = 100,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        dead_letter: str | bool | None = DEFAULT_DEAD_LETTER,
        claim_idle: float = 30.0,
        reconnect_backoff: float = 0.2,
        order_by: Union[str, OrderKey, None] = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
        max_retry_delay: float = 30.0,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        super().__init__(
            RedisStreamSource(
                url,
                streams=streams,
                group=group,
                consumer=consumer,
                codec=codec,
                max_in_flight=max_in_flight,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                max_retry_delay=max_retry_delay,
                dead_letter=dead_letter,
                claim_idle=claim_idle,
                reconnect_backoff=reconnect_backoff,
                max_reconnect_delay=max_reconnect_delay,
                order_by=order_by,
            ),
            max_event_history=max_event_history,
            shutdown_timeout=shutdown_timeout,
        )

    @property
    def config(self) -> RedisStreamSource:
        """The listener's settings: its source (``RedisStreamConfig`` is ``RedisStreamSource``)."""
        return self.source

    @property
    def redis(self) -> Any:
        """The ``redis.asyncio.Redis`` client of the running listener (for idempotency keys and
        the like); raises ``RuntimeError`` when the listener is not running."""
        return self.source.redis

    @property
    def in_flight(self) -> int:
        """How many messages this process is handling (read and not yet acknowledged)."""
        return self.source.in_flight
