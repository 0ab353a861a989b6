"""Kafka listener: a listener hosting one :class:`~tiny_listener.kafka.KafkaSource`.

Everything Kafka does is in :mod:`.source`, on the one broker delivery flow
(:mod:`tiny_listener.sources.broker`); this class gives it the constructor and attributes of
the other broker listeners.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Sequence, Tuple

from ..codecs import Codec
from ..listener import CTXType
from ..sources._attribute import SourceAttribute
from ..sources.broker_listener import BrokerListener
from .source import DEFAULT_URL, KafkaSource

if TYPE_CHECKING:
    from aiokafka.structs import RecordMetadata


class KafkaListener(BrokerListener[CTXType, KafkaSource]):
    """Consume Kafka topics as a member of consumer group ``group``; every record becomes an
    event whose path is its topic (or its ``x-event-path`` header, see ``path_from``).

    - The subscription comes from the routes (``orders`` subscribes to topic ``orders``,
      ``orders.{region}`` to every topic it matches, by pattern) unless ``topics`` names the
      topics; a route that cannot be a subscription is an error at start.
    - The record's value, decoded by ``codec`` (JSON by default), is the event data;
      ``event.ctx.scope["message"]`` is the aiokafka ``ConsumerRecord`` (key, headers, offset).
    - Start as many processes with the same ``group`` as wanted: Kafka spreads the partitions
      over them and moves them when one joins or leaves.
    - Records of one partition run one at a time in offset order; ``order="key"`` runs records
      of different keys concurrently, each key's in order. At most ``max_in_flight`` events run
      at once; a partition holding more than half of ``max_buffered`` fetched records is not
      fetched from until half of them started, and a fetch brings at most the other half.
    - Offsets are committed up to the lowest unfinished record of each partition, every
      ``commit_interval`` seconds or ``commit_batch`` records, when partitions are revoked (after
      their running events finish, up to ``revoke_timeout``) and at shutdown. Delivery is at
      least once: a worker that dies leaves its uncommitted records to the next owner.
    - A failing handler is retried ``max_retries`` times, after ``retry_backoff`` seconds
      doubling up to ``max_retry_delay``, holding its partition's (or key's) turn; then the
      record goes to the dead-letter topic (``<topic>.dead`` by default, see ``dead_letter``)
      with headers saying where it came from and why, and its partition moves on. A record
      that cannot be decoded or matches no route is dead-lettered at once.
    - :meth:`publish` sends a record through the codec, acknowledged by all in-sync replicas
      by default (``acks``).

    ``app.source`` is the :class:`~tiny_listener.kafka.KafkaSource` doing all this; the
    settings are attributes of both. Raises ``ValueError`` for a URL that is not
    ``kafka://host:port[,host:port...]`` and for settings out of range.
    """

    # Kafka's settings; those of every broker (url, codec, max_in_flight...) are BrokerListener's.
    group: SourceAttribute[str] = SourceAttribute()
    topics: SourceAttribute[Tuple[str, ...] | None] = SourceAttribute()
    path_from: SourceAttribute[str] = SourceAttribute()
    order: SourceAttribute[str] = SourceAttribute()
    commit_interval: SourceAttribute[float] = SourceAttribute()
    revoke_timeout: SourceAttribute[float] = SourceAttribute()
    max_buffered: SourceAttribute[int] = SourceAttribute()
    auto_offset_reset: SourceAttribute[str] = SourceAttribute()
    acks: SourceAttribute[int | str] = SourceAttribute()
    client_id: SourceAttribute[str] = SourceAttribute()
    consumer_options: SourceAttribute[Dict[str, Any]] = SourceAttribute()
    producer_options: SourceAttribute[Dict[str, Any]] = SourceAttribute()
    fetch_timeout: SourceAttribute[float] = SourceAttribute()
    fetch_batch: SourceAttribute[int] = SourceAttribute()
    commit_timeout: SourceAttribute[float] = SourceAttribute()
    unreachable_after: SourceAttribute[float] = SourceAttribute()

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        group: str = "tiny-listener",
        topics: str | Sequence[str] | None = None,
        path_from: str = "topic",
        order: str = "partition",
        codec: Codec | None = None,
        max_in_flight: int = 100,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
        commit_interval: float = 1.0,
        commit_batch: int = 1000,
        revoke_timeout: float = 10.0,
        max_buffered: int = 1000,
        auto_offset_reset: str = "earliest",
        acks: int | str = "all",
        client_id: str | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(
            KafkaSource(
                url,
                group=group,
                topics=topics,
                path_from=path_from,
                order=order,
                codec=codec,
                max_in_flight=max_in_flight,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                max_retry_delay=max_retry_delay,
                dead_letter=dead_letter,
                reconnect_backoff=reconnect_backoff,
                max_reconnect_delay=max_reconnect_delay,
                commit_interval=commit_interval,
                commit_batch=commit_batch,
                revoke_timeout=revoke_timeout,
                max_buffered=max_buffered,
                auto_offset_reset=auto_offset_reset,
                acks=acks,
                client_id=client_id,
                consumer_options=consumer_options,
                producer_options=producer_options,
            ),
            max_event_history=max_event_history,
            shutdown_timeout=shutdown_timeout,
        )

    @property
    def dead_letter_target(self) -> str | None:
        """Where dead letters go (``{topic}`` stands for the record's topic); None with
        ``dead_letter=False``."""
        return self.source.dead_letter_target

    @property
    def assignment(self) -> List[Tuple[str, int]]:
        """The ``(topic, partition)`` pairs assigned to this worker now, sorted."""
        return self.source.assignment

    async def publish(
        self,
        topic: str,
        data: Any = None,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        partition: int | None = None,
    ) -> RecordMetadata:
        """Publish ``data`` encoded by the codec to ``topic``; see :meth:`KafkaSource.publish`."""
        return await self.source.publish(topic, data, key=key, headers=headers, partition=partition)
