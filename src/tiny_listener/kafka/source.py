"""Kafka on the one broker delivery flow: a consumer in a consumer group whose records become
events (see :mod:`tiny_listener.sources.broker` for the flow).

What is Kafka's own is here, on aiokafka: joining the group and following its rebalances,
fetching records into the ordering scheduler (:mod:`._ordering`), which hands the flow only
records whose turn it is, committing offsets up to the lowest unfinished one of each partition
(:mod:`._offsets`), in batches, on revocation and at shutdown, and :class:`KafkaMessage`
(settling a record, putting it back, dead-lettering it to a topic). Routes become the
subscription and records become event paths in :mod:`._topics`.

Kafka cannot take one message back or redeliver it later, so retries happen in this process
(``redelivers_retries = False``): the flow runs the event again after the backoff, holding the
record's lane, so nothing of that partition (or key) passes it; after the last retry the record
is dead-lettered and its partition moves on.
"""

from __future__ import annotations

import asyncio
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Sequence, Tuple, Type
from urllib.parse import urlsplit

from .._types import Scope
from ..codecs import Codec
from ..delivery import data_to_payload
from ..optional import require
from ..sources.broker import BrokerMessage, BrokerSource, NotConnected, safe_url
from ._offsets import OffsetTracker, PartitionOffsets
from ._ordering import OrderingScheduler, PartitionLanes
from ._topics import (
    DEFAULT_DEAD_LETTER,
    PATH_FROM,
    Subscription,
    dead_letter_headers,
    dead_letter_topic,
    encode_headers,
    encode_key,
    record_path,
    subscription,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
    from aiokafka.structs import RecordMetadata

DEFAULT_URL = "kafka://127.0.0.1:9092"

LAST_COMMIT_PROBE = 1.0
"""Seconds a broker has to answer before the last commit (when the source disconnects)."""

ORDERS = ("partition", "key")
"""``order="partition"``: the records of a partition run one at a time, in offset order;
``order="key"``: records of different keys of a partition run concurrently, each key's in order."""


class PartitionRevoked(NotConnected):
    """The record's partition was revoked from this consumer: its new owner handles it."""


_PAUSED_FETCH_TIMEOUT = 0.02
"""Seconds a fetch that leaves out a paused partition waits for records at most: once the
partition may be fetched again, it waits for that fetch to end."""


class _Partition:
    """What this consumer keeps of one assigned partition: its offsets, its lanes, how many of
    its records the flow is handling, and (once revoked) an event set when that is none.

    A revoked partition takes no new records (``lanes.revoked``) while its running records
    finish; once its offsets are committed it is ``released``, and what still finishes then
    is ignored: its new owner has the records.
    """

    __slots__ = ("held", "idle", "lanes", "offsets", "paused", "released", "running", "tp")

    def __init__(self, tp: TopicPartition, offsets: PartitionOffsets, lanes: PartitionLanes[Any]) -> None:
        self.tp = tp
        self.offsets = offsets
        self.lanes = lanes
        self.running = 0
        self.held = 0
        """Its records fetched and not started yet."""
        self.paused = False
        """True while it is not fetched: it holds more than half of ``max_buffered`` records."""
        self.idle: asyncio.Event | None = None
        self.released = False

    def ran(self) -> None:
        """One of its records is settled or handed back."""
        self.running -= 1
        if self.running == 0 and self.idle is not None:
            self.idle.set()


class KafkaMessage(BrokerMessage):
    """A Kafka record: its event path comes from its topic (or header, see ``path_from``), its
    payload is its value, ``topic[partition]@offset`` names it in logs."""

    __slots__ = ("partition", "record", "source")

    def __init__(self, record: ConsumerRecord, partition: _Partition, source: KafkaSource) -> None:
        # BrokerMessage's attributes, set here directly: this runs for every record.
        self.path = record.topic if source._path_is_topic else record_path(
            record.topic, record.headers, source.path_from)
        self.payload = record.value if record.value is not None else b""
        self.attempt = 1
        self.record = record
        self.partition = partition
        self.source = source

    @property
    def message_id(self) -> str:  # type: ignore[override]  # read-only: made when a line is logged
        record = self.record
        return f"{record.topic}[{record.partition}]@{record.offset}"

    def scope(self) -> Scope:
        return {"message": self.record, "attempt": self.attempt}

    def ack(self) -> None:
        """Settled in memory: its offset is finished, committed with a batch, and the next
        record of its lane is taken to run at once, in this record's place on its partition
        (the flow delivers it in the same task: see :meth:`KafkaSource.next_in_turn`). The
        source's bookkeeping is updated here, not through a method of the source: this runs
        for every record."""
        partition = self.partition
        if partition.released:
            partition.ran()
            return  # committed (or given up) at revocation; its new owner has it
        source = self.source
        record = self.record
        due = source._tracker.finished(partition.offsets, record.offset)
        following = source._scheduler.take_next(partition.lanes, record.key)
        if following is None:
            partition.running -= 1  # partition.ran(), inlined
            if partition.running == 0 and partition.idle is not None:
                partition.idle.set()
        else:
            # Started now (its partition's ``running`` stays as it was: it takes this record's
            # place), unless the flow leaves it: then _not_taken() puts it back.
            if source._in_turn is not None:  # the flow did not take the last one
                source._not_taken()
            # _started(partition) but for ``running``, inlined: this runs for every record.
            partition.held -= 1
            if partition.paused and partition.held <= source._resume_at:
                source._resume(partition)
            # _message_of(following, partition, source), inlined: this runs for every record.
            source._in_turn = (
                following if type(following) is KafkaMessage else KafkaMessage(following, partition, source)
            )
        if due and source._commit_due is not None:
            source._commit_due.set()

    async def drop(self) -> None:
        self.ack()

    async def release(self, delay: float = 0.0) -> None:
        self.source._put_back(self, delay)

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> str:
        return await self.source._dead_letter(self, target, reason, error)


class KafkaSource(BrokerSource):
    """Consume Kafka topics as a member of consumer group ``group``; every record becomes an
    event. See :class:`~tiny_listener.kafka.KafkaListener` for the behaviour and
    :class:`~tiny_listener.sources.broker.BrokerSource` for the settings every broker shares.

    ``url`` is ``kafka://host:port``, several bootstrap brokers separated by commas
    (``kafka://k1:9092,k2:9092``). ``dead_letter=True`` dead-letters a record to
    ``<its topic>.dead``; a string names the topic, ``{topic}`` in it standing for the
    record's topic.
    """

    kind = "kafka"
    broker = "Kafka"
    url_schemes = ("kafka",)
    url_form = "kafka://host:port[,host:port...]"
    # aiokafka logs each rebalance step and every connection retry on its own loggers (its
    # client's is "aiokafka": several ERROR lines a second while no broker answers).
    client_loggers = (
        "aiokafka", "aiokafka.cluster", "aiokafka.conn", "aiokafka.consumer.consumer",
        "aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator", "aiokafka.consumer.subscription_state",
        "aiokafka.producer.producer", "aiokafka.producer.sender",
    )
    redelivers_retries = False

    fetch_timeout: float = 1.0
    """How long one receive waits for a record whose turn it is, before the flow asks again."""
    fetch_batch: int = 100
    """How many fetched records are taken from aiokafka's buffer at a time (at most), the flow
    starting them before the next are taken. aiokafka keeps what it fetched as bytes; taken out,
    each record is a Python object: taking hundreds at once made them outlive garbage
    collections and fill the oldest generation, whose full collections then took a quarter of
    the CPU time of a benchmark run (18 ms of 70)."""
    commit_timeout: float = 10.0
    """How long one commit may take (aiokafka waits for the group coordinator without end);
    one that takes longer is logged, and its offsets are committed with the next batch."""
    unreachable_after: float = 10.0
    """How long no broker of the cluster may answer before the source says Kafka is
    unreachable, stops consuming and reconnects (aiokafka would retry inside the fetch
    without end, and without a word but its own). While no record comes in, the source asks
    the cluster for its topics every quarter of this, to tell an outage from a quiet topic."""

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
        name: str | None = None,
    ) -> None:
        """Raises ``ValueError`` for a URL that is not a Kafka URL and for settings out of range."""
        super().__init__(
            url,
            name=name,
            codec=codec,
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            max_retry_delay=max_retry_delay,
            dead_letter=dead_letter,
            reconnect_backoff=reconnect_backoff,
            max_reconnect_delay=max_reconnect_delay,
        )
        if path_from not in PATH_FROM:
            raise ValueError(f"path_from must be one of {', '.join(map(repr, PATH_FROM))}, not {path_from!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(map(repr, ORDERS))}, not {order!r}")
        for setting, value in (("commit_interval", commit_interval), ("revoke_timeout", revoke_timeout)):
            if value <= 0:
                raise ValueError(f"{setting} must be a positive number of seconds, not {value!r}")
        for setting, count in (("commit_batch", commit_batch), ("max_buffered", max_buffered)):
            if count < 1:
                raise ValueError(f"{setting} must be at least 1, not {count!r}")
        self.group = group
        self.topics: Tuple[str, ...] | None = (topics,) if isinstance(topics, str) else (
            tuple(topics) if topics is not None else None)
        self.path_from = path_from
        self.order = order
        self.commit_interval = commit_interval
        self.commit_batch = commit_batch
        self.revoke_timeout = revoke_timeout
        self.max_buffered = max_buffered
        # A partition is fetched while it holds at most _resume_at records, and a fetch brings
        # at most max_buffered - _resume_at: no partition ever holds more than max_buffered.
        self._resume_at = max_buffered // 2
        self._room: asyncio.Event | None = None  # set when a paused partition may be fetched again
        self.auto_offset_reset = auto_offset_reset
        self.acks = acks
        self.client_id = client_id or f"tiny-listener-{group}"
        self.consumer_options: Dict[str, Any] = dict(consumer_options or {})
        self.producer_options: Dict[str, Any] = dict(producer_options or {})
        self.subscription: Subscription | None = None
        """What the source subscribes to, settled when it starts (from ``topics`` or the routes)."""
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._partitions: Dict[TopicPartition, _Partition] = {}
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker(commit_batch)
        # What waits its turn: a record as fetched (its message is made when it starts: see
        # receive()), or a message handed back.
        self._scheduler: OrderingScheduler[TopicPartition, Any] = OrderingScheduler(by_key=order == "key")
        self._path_is_topic = path_from == "topic"  # set again when fetching starts
        self._waiter: asyncio.Future[None] | None = None
        # The record whose turn came when the last one was acknowledged, taken for the flow to
        # deliver next in the same task (next_in_turn), and counted as running on its
        # partition; if the flow does not take it (at shutdown, after an adapter error), the
        # next ack, receive or revocation makes it startable (_not_taken).
        self._in_turn: KafkaMessage | None = None
        self._commit_due: asyncio.Event | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._fetch_error: BaseException | None = None
        self._unreachable = False
        """True once no broker answered for ``unreachable_after``: nothing is committed then."""
        self._answered = 0.0
        """The loop time a broker last answered: records fetched, or a metadata request."""
        self._fetching: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ public

    def check_url(self, url: str) -> str:
        """Return ``url`` if it is ``kafka://host:port[,host:port...]``; raise ``ValueError``
        naming it and the expected form if not."""
        shown = safe_url(url)
        parts = urlsplit(url)
        self._check_scheme(url, parts.scheme)
        hosts = parts.netloc.rpartition("@")[2]
        for address in hosts.split(","):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"Kafka URL {shown!r}: {address!r} is not host:port; expected {self.url_form}")
        return url

    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port,...`` list of the URL, as Kafka clients take it."""
        return urlsplit(self.url).netloc.rpartition("@")[2]

    @property
    def assignment(self) -> List[Tuple[str, int]]:
        """The ``(topic, partition)`` pairs assigned to this consumer now, sorted."""
        return sorted((tp.topic, tp.partition) for tp in self._partitions)

    async def publish(
        self,
        topic: str,
        data: Any = None,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        partition: int | None = None,
    ) -> RecordMetadata:
        """Publish ``data``, encoded by the codec, to ``topic`` with ``key`` and ``headers``;
        return the record's metadata (partition, offset) once the broker stored it (with
        ``acks="all"``, the default: once every in-sync replica did).

        Raises :class:`~tiny_listener.sources.NotConnected` while the source is not connected,
        and aiokafka's ``KafkaError`` if the broker does not take the record.
        """
        producer = self._producer
        if producer is None:
            raise NotConnected(f"not connected to Kafka at {self.log.url}")
        return await producer.send_and_wait(topic, data_to_payload(data, self.codec), key=encode_key(key),
                                            headers=encode_headers(headers), partition=partition)

    def health(self) -> Dict[str, Any]:
        """The flow's report plus ``group``, ``partitions`` (assigned now) and ``buffered``."""
        return {**super().health(), "group": self.group, "partitions": len(self._partitions),
                "buffered": self._scheduler.waiting}

    # ------------------------------------------------------------------ the broker's part of the flow

    async def serve(self) -> None:
        """Settle the subscription (a route that cannot be one raises
        :class:`~tiny_listener.kafka.SubscriptionError` here, before connecting), then run
        the flow. Raises ``ValueError`` if a timing attribute set after construction
        (``fetch_timeout``, ``commit_timeout``, ``unreachable_after``) is not positive, or
        ``fetch_batch`` is not at least 1."""
        for setting in ("fetch_timeout", "commit_timeout", "unreachable_after"):
            value = getattr(self, setting)
            if not value > 0:
                raise ValueError(f"{setting} must be a positive number of seconds, not {value!r}")
        if not (isinstance(self.fetch_batch, int) and self.fetch_batch >= 1):
            raise ValueError(f"fetch_batch must be at least 1, not {self.fetch_batch!r}")
        self.subscription = subscription(self.listener.routes.values(), self.topics, self.dead_letter_target)
        await super().serve()

    def connection_errors(self) -> Tuple[Type[BaseException], ...]:
        errors = require("aiokafka.errors", extra="kafka")
        return (OSError, asyncio.TimeoutError, errors.KafkaError)

    def intake(self) -> str:
        assert self.subscription is not None
        return f"{self.subscription.describe()} as group {self.group!r}"

    def default_dead_letter_target(self) -> str:
        return DEFAULT_DEAD_LETTER

    async def connect(self) -> None:
        """Start the producer (publishing, dead letters) and the consumer, join the group."""
        aiokafka = require("aiokafka", extra="kafka")
        assert self.subscription is not None
        self._commit_due, self._commit_lock = asyncio.Event(), asyncio.Lock()
        self._fetch_error = None
        self._unreachable = False
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id=self.client_id, acks=self.acks,
            **self.producer_options,
        )
        self._producer = producer
        await producer.start()
        options: Dict[str, Any] = {
            "group_id": self.group,
            "client_id": self.client_id,
            "enable_auto_commit": False,  # offsets are committed here, up to finished work only
            "auto_offset_reset": self.auto_offset_reset,
            # How long the broker holds a fetch request that finds no new record (aiokafka's
            # default: 500 ms): a partition that was full and is asked for again waits that
            # long behind a fetch under way that finds nothing. An idle consumer asks 20 times
            # a second instead of 2.
            "fetch_max_wait_ms": 50,
        }
        if self.subscription.pattern is not None:
            # New topics matching the pattern are found when metadata is refreshed.
            options["metadata_max_age_ms"] = 5000
        options.update(self.consumer_options)
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, **options)
        self._consumer = consumer
        aiokafka.abc.ConsumerRebalanceListener.register(_Rebalances)
        rebalances = _Rebalances(self)
        if self.subscription.pattern is not None:
            consumer.subscribe(pattern=self.subscription.pattern, listener=rebalances)
        else:
            consumer.subscribe(topics=list(self.subscription.topics), listener=rebalances)
        await consumer.start()
        self._answered = asyncio.get_running_loop().time()
        self._fetching = self.listener.spawn(self._fetch_loop(consumer), name=f"{self.name} fetch")
        self._committing = self.listener.spawn(self._commit_loop(consumer), name=f"{self.name} commit")
        self._watching = self.listener.spawn(self._watch_loop(consumer), name=f"{self.name} watch")

    async def receive(self, max_messages: int) -> Sequence[KafkaMessage]:
        """Return up to ``max_messages`` records whose turn it is, waiting up to
        ``fetch_timeout`` for one; raise the fetch loop's error if it failed."""
        scheduler = self._scheduler
        if self._in_turn is not None:
            self._not_taken()
        if self._consumer is None:
            raise NotConnected(f"not connected to Kafka at {self.log.url}")
        if not scheduler.startable:
            if self._fetch_error is None:
                # A future and a timer, not wait_for(): this wait happens for many records.
                loop = asyncio.get_running_loop()
                waiter = self._waiter = loop.create_future()
                timer = loop.call_later(self.fetch_timeout, _wake, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    self._waiter = None
            if self._fetch_error is not None:
                raise self._fetch_error
        messages = []
        for owner, item in scheduler.take_entries(max_messages):
            partition = owner.owner
            messages.append(_message_of(item, partition, self))
            self._started(partition)
        return messages

    def _started(self, partition: _Partition) -> None:
        """One of ``partition``'s records is handed to the flow."""
        partition.running += 1
        partition.held -= 1
        if partition.paused and partition.held <= self._resume_at:
            self._resume(partition)

    def _resume(self, partition: _Partition) -> None:
        """A paused partition is fetched again once it holds half of ``max_buffered``
        (``_resume_at``)."""
        if not partition.released:
            partition.paused = False
            if self._room is not None:
                self._room.set()

    async def stop_receiving(self) -> None:
        """Intake stops at shutdown: stop fetching (and watching for an outage: the last
        commit asks for itself). Records fetched and not started stay uncommitted; the
        group's next owner of their partition gets them."""
        await _cancel(self._fetching)
        await _cancel(self._watching)

    async def disconnect(self) -> None:
        """Stop fetching, commit what finished (if a broker answers), leave the group and
        close the clients."""
        loops = (self._fetching, self._committing, self._watching)
        self._fetching = self._committing = self._watching = None
        for task in loops:
            await _cancel(task)
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                try:
                    await self._last_commit(consumer)
                finally:
                    for tp in list(self._partitions):
                        self._forget(tp)
                    await _stop_consumer(consumer)  # leaves the group: its partitions go to the others at once
        finally:
            if producer is not None:
                await producer.stop()

    async def _last_commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what finished, unless no broker answers: a commit would wait
        ``commit_timeout`` for nothing, longer than shutdown gives a source to close."""
        if self._unreachable:
            return  # said when it was found: the records finished since the last commit come again
        if not await self._broker_answers(consumer, LAST_COMMIT_PROBE):
            self._unreachable = True
            if self._partitions:
                self.log.logger.warning(
                    "no Kafka broker answers: offsets of %s not committed; the records finished since the last "
                    "commit will be handled again", _describe(self._partitions), extra={"broker": self.broker},
                )
            return
        await self._commit(consumer, self._partitions)

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch records into the ordering scheduler, ``fetch_batch`` at most at a time, and
        let the flow start them before taking more. A partition holding more than half of
        ``max_buffered`` records is paused: it is left out of the fetches (the others are
        still fetched) until it holds half of them again. Its records fetched meanwhile wait
        in aiokafka's buffer: pausing it in aiokafka (``consumer.pause``) would throw them
        away, to be fetched again after a round trip. A failure is kept for :meth:`receive`
        to raise."""
        scheduler = self._scheduler
        self._path_is_topic = self.path_from == "topic"
        room = self._room = asyncio.Event()
        resume_at = self._resume_at
        # Records one fetch brings: none holds more than max_buffered.
        most = min(self.fetch_batch, self.max_buffered - resume_at)
        partitions = self._partitions
        loop = asyncio.get_running_loop()
        try:
            while True:
                wanted = [tp for tp, partition in partitions.items() if not partition.paused]
                if len(wanted) == len(partitions):
                    wanted = []  # every assigned partition (also one assigned meanwhile)
                    timeout = self.fetch_timeout
                elif wanted:
                    # A paused partition that may be fetched again waits for this fetch: not long.
                    timeout = min(self.fetch_timeout, _PAUSED_FETCH_TIMEOUT)
                else:  # every partition is paused: wait for one to take records again
                    room.clear()
                    await room.wait()
                    continue
                batch = await consumer.getmany(*wanted, timeout_ms=int(timeout * 1000), max_records=most)
                if not batch:
                    continue
                self._answered = loop.time()
                for tp, records in batch.items():
                    partition = partitions.get(tp)
                    if partition is None or partition.lanes.revoked:  # revoked since it was fetched
                        continue
                    offsets, lanes = partition.offsets, partition.lanes
                    # Records come in offset order; those at the front may have been fetched
                    # again after a rebalance, and are held already.
                    first, last_received = 0, offsets.last_received
                    while first < len(records) and records[first].offset <= last_received:
                        first += 1
                    taken = records[first:] if first else records
                    offsets.received_all(list(map(_offset_of, taken)))  # in C: this runs for every record
                    scheduler.add_all(lanes, taken, _record_key)
                    partition.held += len(taken)
                    if partition.held > resume_at:
                        partition.paused = True
                if scheduler.startable and self._waiter is not None:
                    _wake(self._waiter)
                # The flow's turn: the records just taken start (and mostly finish) before the
                # next are taken out of aiokafka's buffer (see fetch_batch).
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fetch_error = exc
            if self._waiter is not None:
                _wake(self._waiter)

    async def _watch_loop(self, consumer: AIOKafkaConsumer) -> None:
        """Tell an outage from a quiet topic: while no record comes, ask the cluster for its
        topics every quarter of ``unreachable_after``; once no broker answered for
        ``unreachable_after``, the connection is lost. A task of its own, not a step of the
        fetch loop: aiokafka retries a broker that is gone inside ``getmany``, which waits
        without end while the group rebalances."""
        loop = asyncio.get_running_loop()
        probe_every = self.unreachable_after / 4
        while True:
            await asyncio.sleep(probe_every)
            if loop.time() - self._answered < probe_every:
                continue  # records came meanwhile
            if await self._broker_answers(consumer, probe_every):
                self._answered = loop.time()
                continue
            silent_for = loop.time() - self._answered
            if silent_for >= self.unreachable_after:
                errors = require("aiokafka.errors", extra="kafka")
                error = errors.KafkaConnectionError(f"no broker answered for {silent_for:.1f}s")
                self._unreachable = True
                self._fetch_error = error
                self.connection_lost(error)  # also while every slot is taken and none receives
                if self._waiter is not None:
                    _wake(self._waiter)
                return

    async def _broker_answers(self, consumer: AIOKafkaConsumer, timeout: float) -> bool:
        """Whether a broker of the cluster answers a metadata request within ``timeout``."""
        errors = require("aiokafka.errors", extra="kafka")
        try:
            await asyncio.wait_for(consumer.topics(), timeout)
        except (errors.KafkaError, OSError, asyncio.TimeoutError):
            return False
        return True

    # ------------------------------------------------------------------ settling

    def next_in_turn(self, settled: BrokerMessage) -> KafkaMessage | None:
        """The record whose turn came when ``settled`` was acknowledged (see
        :meth:`KafkaMessage.ack`), if any: the flow delivers it in the same task. The flow
        calls this right after settling, with nothing run in between, so it is ``settled``'s
        lane's next record (or, after the flow left one, a record that may start anyway)."""
        following = self._in_turn
        if following is None:
            return None
        self._in_turn = None
        if following.partition.lanes.revoked:  # left by the flow, then revoked: its new owner has it
            following.partition.ran()
            return None
        return following

    def _not_taken(self) -> None:
        """The flow did not deliver the record taken for it (see :attr:`_in_turn`): it is not
        running after all, and may start, for a receive (unless its partition was revoked
        meanwhile)."""
        following, self._in_turn = self._in_turn, None
        assert following is not None
        partition = following.partition
        partition.held += 1
        partition.ran()
        self._scheduler.make_startable(partition.lanes, following)
        if self._waiter is not None:
            _wake(self._waiter)

    def _put_back(self, message: KafkaMessage, delay: float) -> None:
        """The record was handed back unhandled: it runs again after ``delay`` seconds, before
        anything else of its lane (Kafka keeps no per-record redelivery)."""
        message.partition.ran()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._requeue, message)
        else:
            self._requeue(message)

    def _requeue(self, message: KafkaMessage) -> None:
        if message.partition.lanes.revoked:
            return
        message.partition.held += 1
        self._scheduler.put_back(message.partition.lanes, message.record.key, message)
        if self._waiter is not None:
            _wake(self._waiter)

    async def _dead_letter(self, message: KafkaMessage, target: str, reason: str, error: BaseException) -> str:
        """Publish the dead letter of ``message`` to its topic (``target`` with ``{topic}``
        replaced) and return that topic."""
        producer = self._producer
        if producer is None:
            raise NotConnected(f"not connected to Kafka at {self.log.url}")
        if message.partition.released:
            raise PartitionRevoked(f"partition {message.partition.tp} was revoked; its new owner handles the record")
        record = message.record
        headers = dead_letter_headers(
            record.headers, path=message.path, reason=reason, error=error, attempts=message.attempt,
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
        )
        topic = dead_letter_topic(target, record.topic)
        await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
        return topic

    # ------------------------------------------------------------------ offsets

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        """Commit every ``commit_interval`` seconds, or as soon as ``commit_batch`` records
        finished."""
        due = self._commit_due
        assert due is not None
        while True:
            try:
                await asyncio.wait_for(due.wait(), self.commit_interval)
            except asyncio.TimeoutError:
                pass
            due.clear()
            await self._commit(consumer, None)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition] | None) -> bool:
        """Commit the committable offsets of ``partitions`` (default: all) that moved; return
        False if that failed: the failure is logged, and the offsets are committed with the
        next batch."""
        lock = self._commit_lock
        if lock is None:
            return False
        errors = require("aiokafka.errors", extra="kafka")
        async with lock:
            offsets = self._tracker.to_commit(partitions)
            if not offsets:
                return True
            try:
                await asyncio.wait_for(consumer.commit(offsets), self.commit_timeout)
            except (errors.KafkaError, OSError, asyncio.TimeoutError) as exc:
                self.log.logger.warning("could not commit offsets %s (%r); they are committed with the next batch",
                                        _describe(offsets), exc, extra={"broker": self.broker})
                return False
            self._tracker.committed(offsets)
            return True

    # ------------------------------------------------------------------ rebalances

    def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        for tp in assigned:
            lanes = self._scheduler.assign(tp)
            lanes.owner = self._partitions[tp] = _Partition(tp, self._tracker.assign(tp), lanes)
        if self._room is not None:  # the fetch loop may wait while every other partition is paused
            self._room.set()
        self.log.logger.info("group %r assigned %s to this consumer", self.group, _describe(self._partitions) or
                             "no partition", extra={"broker": self.broker})

    async def _revoked(self, consumer: AIOKafkaConsumer, revoked: Iterable[TopicPartition]) -> None:
        """Stop taking the records of ``revoked``, let the running ones finish within
        ``revoke_timeout``, commit, then let them go."""
        losing = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        if not losing:
            return
        if self._in_turn is not None and self._in_turn.partition in losing:
            self._not_taken()  # left by the flow: it does not run, and must not be waited for
        for partition in losing:
            self._scheduler.revoke(partition.tp)  # their records that did not start are dropped
            partition.idle = asyncio.Event()
            if partition.running == 0:
                partition.idle.set()
        running = sum(partition.running for partition in losing)
        tps = [partition.tp for partition in losing]
        if running:
            # The group waits for this consumer meanwhile: said, so that a stalled rebalance
            # shows why.
            self.log.logger.info("partitions %s being revoked: waiting up to %.1fs for %d running event(s)",
                                 _describe(tps), self.revoke_timeout, running, extra={"broker": self.broker})
        idle = [partition.idle.wait() for partition in losing if partition.idle is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*idle), self.revoke_timeout)
        except asyncio.TimeoutError:
            pass  # said below, with how many are still running
        committed = await self._commit(consumer, tps)
        still = sum(partition.running for partition in losing)
        for tp in tps:
            self._forget(tp)
        if still:
            self.log.logger.warning(
                "partitions %s revoked with %d event(s) still running after %.1fs; their records will be redelivered "
                "to the partitions' new owner", _describe(tps), still, self.revoke_timeout,
                extra={"broker": self.broker},
            )
        else:
            # A failed commit was said above: the partitions' new owner handles again what
            # finished since the last one.
            self.log.logger.info("partitions %s revoked: %d running event(s) finished, offsets %s",
                                 _describe(tps), running, "committed" if committed else "not committed",
                                 extra={"broker": self.broker})

    def _forget(self, tp: TopicPartition) -> None:
        partition = self._partitions.pop(tp, None)
        self._tracker.revoke(tp)
        self._scheduler.revoke(tp)
        if partition is not None:
            partition.released = True


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (one of the source's loops) and wait until it ended."""
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task])


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, and what it leaves undone when it raises the cancellation of one of
    its own fetch tasks instead of ours: aiokafka's fetcher cancels and awaits the fetch
    requests under way, so one waiting to retry a broker that is gone ends ``stop()`` with
    ``CancelledError`` before the client's connections are closed (aiokafka issue #647)."""
    stopping = asyncio.ensure_future(consumer.stop())
    try:
        await asyncio.wait([stopping])
    except asyncio.CancelledError:  # ours: shutdown gave up waiting
        stopping.cancel()
        raise
    if not stopping.cancelled():
        stopping.result()  # raises what stop() raised
        return
    # The fetcher's other requests and the client are private to aiokafka: reached only here.
    for request in getattr(consumer._fetcher, "_pending_tasks", ()):
        request.cancel()
    await consumer._client.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _describe(partitions: Iterable[TopicPartition]) -> str:
    """``orders[0,3], payments[1]``: partitions grouped by topic, for log lines."""
    by_topic: Dict[str, List[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{topic}[{','.join(map(str, sorted(numbers)))}]" for topic, numbers in sorted(by_topic.items()))


class _Rebalances:
    """aiokafka's rebalance listener for one source (registered as a
    ``ConsumerRebalanceListener`` when the source connects: aiokafka is imported only then)."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        consumer = self.source._consumer
        if consumer is not None:
            await self.source._revoked(consumer, revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.source._assigned(assigned)


def _message_of(waiting: Any, partition: _Partition, source: KafkaSource) -> KafkaMessage:
    """The message of a record the scheduler held (see ``KafkaSource._scheduler``), which
    starts now: the scheduler holds records as fetched, and messages handed back (which keep
    their attempt count). A message is made when its record starts, not for every record
    waiting its turn: two objects per buffered record made each fetch trigger a garbage
    collection."""
    return waiting if type(waiting) is KafkaMessage else KafkaMessage(waiting, partition, source)


_offset_of = attrgetter("offset")
"""The offset of a record."""


def _record_key(record: ConsumerRecord) -> bytes | None:
    """The key of a record: what orders it with ``by_key``."""
    key: bytes | None = record.key
    return key
