"""NATS JetStream listener: a listener hosting one :class:`~tiny_listener.nats.NATSSource`.

Everything NATS does is in :mod:`.source`, on the one broker delivery flow
(:mod:`tiny_listener.sources.broker`); this class keeps the constructor and attributes that
code written for it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Mapping, Sequence

from ..codecs import Codec
from ..listener import CTXType
from ..sources._attribute import SourceAttribute
from ..sources.broker_listener import BrokerListener
from .source import DEFAULT_URL, NATSSource

if TYPE_CHECKING:
    from nats.js.api import PubAck


class NATSListener(BrokerListener[CTXType, NATSSource]):
    """Consume JetStream ``stream`` through the durable pull consumer ``durable``; every
    message becomes an event whose path is the message's subject.

    - The body, decoded by ``codec`` (JSON by default), is the event data.
    - With ``create_stream`` the stream is created if missing, on ``subjects`` (default: one
      per route, ``orders.{id}`` -> ``orders.*``, ``{rest:path}`` -> ``>``). The consumer is
      created if missing, filtered on the only subject if there is one.
    - Several processes with the same ``stream`` and ``durable`` share the messages.
    - At most ``max_in_flight`` messages are handled at once by this process.
    - A message is acknowledged after its handler succeeded. When the handler fails it is
      nak'ed with a delay (``retry_backoff`` seconds doubling up to ``max_retry_delay``) and
      redelivered, up to ``max_retries`` times; then it is published to the ``dead_letter``
      subject (default ``deadletter.<stream>``, kept in the ``<stream>_dead`` stream that is
      created with the stream) with the error in its headers, and terminated. A message that
      matches no route or cannot be decoded is dead-lettered at once. ``dead_letter=False``
      logs such messages as errors and terminates them instead.
    - A handler running longer than ``ack_wait`` seconds keeps its message with progress
      acknowledgements; a message of a process that died is redelivered after ``ack_wait``.
    - A lost connection is logged and re-made, after ``reconnect_backoff`` seconds doubling up
      to ``max_reconnect_delay``.
    - At shutdown, fetching stops, in-flight messages finish and are acknowledged (up to
      ``shutdown_timeout``); unfinished ones are nak'ed for immediate redelivery.

    ``app.source`` is the :class:`~tiny_listener.nats.NATSSource` doing all this; the settings
    are attributes of both. Raises ``ValueError`` for a URL that is not a NATS URL.
    """

    # NATS's settings; those of every broker (url, codec, max_in_flight...) are BrokerListener's.
    stream: SourceAttribute[str] = SourceAttribute()
    durable: SourceAttribute[str] = SourceAttribute()
    subjects: SourceAttribute[List[str] | None] = SourceAttribute()
    create_stream: SourceAttribute[bool] = SourceAttribute()
    ack_wait: SourceAttribute[float] = SourceAttribute()
    connection_name: SourceAttribute[str] = SourceAttribute()
    fetch_timeout: SourceAttribute[float] = SourceAttribute()
    idle_pulls_between_checks: SourceAttribute[int] = SourceAttribute()

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str,
        durable: str,
        subjects: Sequence[str] | None = None,
        create_stream: bool = True,
        codec: Codec | None = None,
        max_in_flight: int = 32,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        ack_wait: float = 30.0,
        connection_name: str | None = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
        max_retry_delay: float = 30.0,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        super().__init__(
            NATSSource(
                url,
                stream=stream,
                durable=durable,
                subjects=subjects,
                create_stream=create_stream,
                codec=codec,
                max_in_flight=max_in_flight,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                max_retry_delay=max_retry_delay,
                dead_letter=dead_letter,
                reconnect_backoff=reconnect_backoff,
                max_reconnect_delay=max_reconnect_delay,
                ack_wait=ack_wait,
                connection_name=connection_name,
            ),
            max_event_history=max_event_history,
            shutdown_timeout=shutdown_timeout,
        )

    @property
    def dead_letter_subject(self) -> str | None:
        """The subject dead letters are published to; None with ``dead_letter=False``."""
        return self.source.dead_letter_target

    def stream_subjects(self) -> List[str]:
        """Return the subjects a created stream listens on: ``subjects``, else one per route."""
        return self.source.stream_subjects()

    async def publish(self, path: str, data: Any = None, *, headers: Mapping[str, str] | None = None) -> PubAck:
        """Publish an event ``path`` (the subject) with ``data`` encoded by the listener's codec;
        return JetStream's acknowledgement once a stream stored it.

        Raises :class:`~tiny_listener.nats.NotConnected` while there is no connection, and
        ``nats.errors.NoRespondersError`` if no stream takes the subject.
        """
        return await self.source.publish(path, data, headers=headers)
