"""The base of the listeners that host one broker source: ``AMQPListener``, ``NATSListener``,
``RedisStreamListener``, ``MQTTListener`` and ``KafkaListener``.

It is not exported by :mod:`tiny_listener.sources`: it is a :class:`~tiny_listener.Listener`,
and :mod:`tiny_listener.listener` imports that package (import it from here).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ..codecs import Codec
from ..listener import CTXType, Listener
from ._attribute import SourceAttribute
from .broker import BrokerSource

SourceT = TypeVar("SourceT", bound=BrokerSource)


class BrokerListener(Listener[CTXType], Generic[CTXType, SourceT]):
    """A listener hosting one broker source, ``app.source``, whose settings are attributes of
    both: ``app.max_in_flight`` reads ``app.source.max_in_flight`` and ``app.max_in_flight = 5``
    sets it.

    The settings every :class:`~tiny_listener.sources.BrokerSource` has are declared here:
    ``url``, ``codec``, ``max_in_flight``, ``max_retries``, ``retry_backoff``,
    ``max_retry_delay``, ``dead_letter``, ``reconnect_backoff``, ``max_reconnect_delay`` and
    ``quiet_client_logs`` (see :mod:`tiny_listener.sources.broker` for their meaning). Each
    broker's listener adds its broker's own settings and members, and builds its source from
    the arguments of its constructor; ``BrokerListener(source)`` hosts a source made beforehand.
    ``max_event_history`` and ``shutdown_timeout`` are the :class:`~tiny_listener.Listener`'s.
    ``connected`` and ``wait_connected()`` tell whether the source consumes.
    """

    source: SourceT

    url: SourceAttribute[str] = SourceAttribute()
    codec: SourceAttribute[Codec] = SourceAttribute()
    max_in_flight: SourceAttribute[int] = SourceAttribute()
    max_retries: SourceAttribute[int] = SourceAttribute()
    retry_backoff: SourceAttribute[float] = SourceAttribute()
    max_retry_delay: SourceAttribute[float] = SourceAttribute()
    dead_letter: SourceAttribute[str | bool | None] = SourceAttribute()
    reconnect_backoff: SourceAttribute[float] = SourceAttribute()
    max_reconnect_delay: SourceAttribute[float] = SourceAttribute()
    quiet_client_logs: SourceAttribute[bool] = SourceAttribute()

    def __init__(
        self, source: SourceT, *, max_event_history: int | None = None, shutdown_timeout: float | None = None
    ) -> None:
        super().__init__(max_event_history=max_event_history, shutdown_timeout=shutdown_timeout)
        self.source = self.add_source(source)

    @property
    def connected(self) -> bool:
        """True while the listener consumes from its broker (its source is ``ready``)."""
        return self.source.connected

    async def wait_connected(self) -> None:
        """Return once the listener consumes from its broker (at once if it already does)."""
        await self.source.wait_connected()
