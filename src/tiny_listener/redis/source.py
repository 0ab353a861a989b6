"""Redis Streams on the one broker delivery flow: workers in a consumer group, at-least-once
(see :mod:`tiny_listener.sources.broker` for the flow).

What is Redis's own is here: the consumer group (created with its stream), ``XREADGROUP`` of no
more messages than there are free slots, ``XAUTOCLAIM`` of the messages other consumers left
pending (with their delivery counts: one delivered too often is dead-lettered, not run),
keeping the messages handled here fresh (``XCLAIM``) so that live work is not claimed away,
batched ``XACK``, dead letter and ``XACK`` in one ``MULTI`` transaction, per-key ordering
(``order_by``), and :class:`RedisStreamMessage`.

Redis has no negative acknowledgement: a failed handler is retried in this process
(``redelivers_retries = False``), and a message handed back stays pending, made claimable by
the other consumers after the delay asked for. Acknowledgements and dead letters caught by an
outage are sent again until they get through (or shutdown gives up on them): the message
stays pending meanwhile, and is not handled twice for want of an ``XACK``.

The reader is never cancelled. Cancelling a redis-py command can be swallowed on Python < 3.12
(``asyncio.wait_for`` returns the result of a future that finished as it was cancelled), and
the intake would then read on after shutdown. So the flow lets a ``receive()`` under way end
(``READ_BLOCK_MS`` bounds it), ``connect()`` and ``close()`` run their commands to the end
(:func:`_to_the_end`), and the loops that send commands again (acknowledgements, the refresher)
stop when their task was asked to cancel, even if redis-py swallowed the request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine, Dict, Hashable, List, Sequence, Tuple, Type, TypeVar, Union
from urllib.parse import urlsplit

from .._types import EventData, Scope
from ..codecs import Codec, DecodeError
from ..delivery import HANDLER_FAILED, NO_ROUTE, UndeliverableMessage, error_text, payload_to_data
from ..errors import EventNotFound
from ..optional import require
from ..sources.base import SourceState
from ..sources.broker import BrokerMessage, BrokerSource, NotConnected, safe_url
from ..tasks import retrieve_exception
from ._acks import AckBatcher
from ._config import (
    DEFAULT_DEAD_LETTER,
    DEFAULT_GROUP,
    DEFAULT_URL,
    OrderKey,
    OrderKeyOf,
    default_consumer_name,
    order_key_function,
)
from ._message import (
    DATA_FIELD,
    PATH_FIELD,
    REDELIVERED_TOO_OFTEN,
    EntryFields,
    Fields,
    dead_letter_fields,
    decode_event,
    fields_of,
)

logger = logging.getLogger("tiny_listener.redis")

T = TypeVar("T")

READ_BLOCK_MS = 250
"""How long one XREADGROUP waits for new messages: at shutdown, the read under way is let end
rather than cancelled, so this bounds how long stopping the intake takes."""



class RedisStreamMessage(BrokerMessage):
    """A stream entry: its ``path`` field is the event path, ``data`` the payload, its id the
    message id. ``attempt`` counts the earlier deliveries of a message claimed from another
    consumer."""

    __slots__ = ("dead_lettered", "entry", "id", "source", "stream", "usual")

    def __init__(self, source: RedisStreamSource, stream: str, message_id: bytes, entry: EntryFields,
                 attempt: int) -> None:
        # BrokerMessage's attributes, set here directly: this runs for every message. A path
        # that is not UTF-8 is shown as best it can be; event_data() refuses it (and one that
        # is missing), so the path is decoded once, here.
        if len(entry) == 4 and entry[0] == PATH_FIELD and entry[2] == DATA_FIELD:  # as RedisPublisher writes
            raw_path: bytes | None = entry[1]
            payload: bytes | None = entry[3]
        else:
            fields = fields_of(entry)
            raw_path, payload = fields.get(PATH_FIELD), fields.get(DATA_FIELD)
        self.payload = payload if payload is not None else b""
        # ``usual``: a UTF-8 path and a data field; event_data() decodes the payload, nothing else.
        if raw_path is None:
            self.path = ""
            self.usual = False
        else:
            try:
                self.path = raw_path.decode()
                self.usual = payload is not None
            except UnicodeDecodeError:
                self.path = raw_path.decode(errors="replace")
                self.usual = False
        self.attempt = attempt
        self.entry = entry
        self.id = message_id
        self.stream = stream
        self.source = source
        self.dead_lettered = False

    @property
    def fields(self) -> Fields:
        """The entry's fields, by name (made when asked for: most messages never are)."""
        return fields_of(self.entry)

    @property
    def message_id(self) -> str:  # type: ignore[override]  # read-only: made when a line is logged
        return self.id.decode()

    def scope(self) -> Scope:
        return {"stream": self.stream, "message_id": self.id, "attempt": self.attempt, "fields": self.fields}

    def event_data(self, codec: Codec) -> EventData:
        """The decoded ``data`` field (``{}`` without one). Raises
        :class:`~tiny_listener.codecs.DecodeError` for data the codec cannot decode and
        :class:`~tiny_listener.delivery.UndeliverableMessage` for an entry that is no event
        (``undecodable``: no path, or one that is not UTF-8) or that consumers kept taking and
        never acknowledging (``redelivered-too-often``: more than ``max_retries + 1``
        deliveries)."""
        if self.usual:
            data = payload_to_data(self.payload, codec)  # DecodeError: the flow dead-letters it
        else:
            _, data = decode_event(self.fields, codec)
        previous = self.attempt - 1
        if previous > self.source.max_retries:
            raise UndeliverableMessage(
                REDELIVERED_TOO_OFTEN,
                f"delivered {previous} times without being acknowledged: its consumers stopped or died",
            )
        return data

    def ack(self) -> Awaitable[None] | None:
        # Queued for the next XACK batch, which stops holding it once sent: nothing to await,
        # unless the queue is full.
        return self.source._acks.queue(self)

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> None:
        """Add the dead letter to ``target`` and acknowledge the message, in one transaction."""
        try:
            await self.source._dead_letter(self, target, reason, error)
            self.dead_lettered = True
        finally:
            self.source._held[self.stream].pop(self.id, None)

    async def drop(self) -> None:
        if not self.dead_lettered:  # dead-lettered: acknowledged with it already
            await super().drop()  # as ack() does

    async def release(self, delay: float = 0.0) -> None:
        try:
            await self.source._make_claimable(self, delay)
        finally:
            self.source._held[self.stream].pop(self.id, None)


class RedisStreamSource(BrokerSource):
    """Handle the events published to Redis ``streams`` as consumer ``consumer`` of ``group``.
    See :class:`~tiny_listener.redis.RedisStreamListener` for the behaviour and
    :class:`~tiny_listener.sources.broker.BrokerSource` for the settings every broker shares.

    - ``dead_letter``: the dead-letter stream, ``{stream}`` standing for the stream read
      (``"{stream}:dead"``; True means that too); False or None: such messages are logged at
      ERROR level and acknowledged.
    - ``claim_idle``: seconds a message may stay unacknowledged by a consumer before another
      claims it (crash recovery). Messages this process is still handling are kept fresh.
    - ``order_by``: a path parameter or data key name, or an :data:`~tiny_listener.redis.OrderKey`
      function; events with the same key then run one at a time, in the order they were read.

    Raises ``ValueError`` for a URL that is not a Redis URL and for settings out of range.
    """

    kind = "redis"
    broker = "Redis"
    url_schemes = ("redis", "rediss", "unix")
    url_form = "redis://[[user]:password@]host[:port][/db] (or rediss://..., unix:///path/to/redis.sock)"
    redelivers_retries = False

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
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = DEFAULT_DEAD_LETTER,
        claim_idle: float = 30.0,
        reconnect_backoff: float = 0.2,
        max_reconnect_delay: float = 10.0,
        order_by: Union[str, OrderKey, None] = None,
        name: str | None = None,
    ) -> None:
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
        names = (streams,) if isinstance(streams, str) else tuple(streams)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"streams must name at least one stream, each once: {names!r}")
        if max_in_flight < len(names):
            # XREADGROUP's COUNT applies per stream: each read asks every stream for at least one.
            raise ValueError(f"max_in_flight ({max_in_flight}) must be at least the number of streams ({len(names)})")
        if claim_idle <= 0:
            raise ValueError(f"claim_idle must be a positive number of seconds, not {claim_idle!r}")
        consumer = consumer if consumer is not None else default_consumer_name()
        if not group or not consumer:
            raise ValueError("group and consumer must be non-empty names")
        self.streams: Tuple[str, ...] = names
        self.group = group
        self.consumer = consumer
        self.claim_idle = claim_idle
        self.order_by = order_by
        self._client: Any = None
        self._reader: Any = None  # see connect()
        self._connection_errors: Tuple[Type[BaseException], ...] = (OSError,)
        self._response_error: Type[Exception] = Exception
        self._acks: AckBatcher[RedisStreamMessage] = AckBatcher(
            self._send_acks,
            self._spawn_drained,
            lambda count, error: self.log.batch_not_settled(count, "acknowledge", error),
            max_pending=max(self.max_in_flight, 100),
        )
        # stream -> {message id -> loop time it was last delivered to or refreshed by this
        # consumer}: by stream, so that no (stream, id) tuple is made per message.
        self._held: Dict[str, Dict[bytes, float]] = {stream: {} for stream in names}
        self._names = {stream.encode(): stream for stream in names}
        self._cursors: Dict[str, Union[bytes, str]] = {}
        self._claim_cursors: Dict[str, Union[bytes, str]] = {}
        self._next_claim = 0.0
        self._turn = 0
        self._joined = False
        self._refresher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ settings

    @property
    def order_by(self) -> Union[str, OrderKey, None]:
        """What orders events (see the class documentation); None: no ordering."""
        return self._order_by

    @order_by.setter
    def order_by(self, order_by: Union[str, OrderKey, None]) -> None:
        self._order_by = order_by
        self._order_key: OrderKeyOf | None = order_key_function(order_by)
        self.ordered = self._order_key is not None

    def check_url(self, url: str) -> str:
        """Return ``url`` if redis-py can take it: ``redis://`` or ``rediss://`` with a host, a
        valid port and a database number if any, or ``unix://`` with a socket path; raise
        ``ValueError`` naming the URL and the expected form if not."""
        shown = safe_url(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ValueError(f"malformed Redis URL {shown!r} ({exc}): expected {self.url_form}") from None
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"Redis URL {shown!r} names no socket path: expected {self.url_form}")
            return url
        super().check_url(url)
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"Redis URL {shown!r} names database {database!r}, not a number: expected {self.url_form}")
        return url

    def dead_letter_stream(self, stream: str) -> str | None:
        """Return the dead-letter stream of messages read from ``stream`` (None with
        ``dead_letter=False``)."""
        template = self.dead_letter_target
        return None if template is None else template.replace("{stream}", stream)

    # ------------------------------------------------------------------ public

    @property
    def redis(self) -> Any:
        """The ``redis.asyncio.Redis`` client of the running source (for idempotency keys and
        the like); raises ``RuntimeError`` when it is not running."""
        if self._client is None:
            raise RuntimeError(f"{self!r} is not running: it has no Redis client")
        return self._client

    def health(self) -> Dict[str, Any]:
        """The flow's report (state, URL, messages in flight) with the group and consumer."""
        return {**super().health(), "group": self.group, "consumer": self.consumer}

    # ------------------------------------------------------------------ the broker's part of the flow

    def connection_errors(self) -> Tuple[Type[BaseException], ...]:
        exceptions = require("redis.exceptions", extra="redis")
        self._response_error = exceptions.ResponseError
        self._connection_errors = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
        return self._connection_errors

    def intake(self) -> str:
        streams = ("streams " if len(self.streams) > 1 else "stream ") + ", ".join(map(repr, self.streams))
        return f"{streams} as consumer {self.consumer!r} of group {self.group!r}"

    def default_dead_letter_target(self) -> str:
        return DEFAULT_DEAD_LETTER

    def dead_letter_target_for(self, message: BrokerMessage) -> str | None:
        assert isinstance(message, RedisStreamMessage)
        return self.dead_letter_stream(message.stream)

    def ordering_key(self, message: BrokerMessage) -> Hashable | None:
        order_key = self._order_key
        if order_key is None:
            return None
        try:
            data = message.event_data(self.codec)
            _, params = self.listener.match_route(message.path)
        except (DecodeError, UndeliverableMessage, EventNotFound):
            return None  # not an event: the flow dead-letters it
        try:
            return order_key(message.path, params, data)
        except Exception:
            logger.exception("order_by failed on event %r (message %s): handling it unordered",
                             message.path, message.message_id)
            return None

    async def connect(self) -> None:
        """Make the client on the first connection of a run (it stays until :meth:`close`:
        handlers use it as ``app.redis``), join the group on every stream, and start keeping
        the messages handled here fresh."""
        loop = asyncio.get_running_loop()
        if self._client is None:
            redis_asyncio = require("redis.asyncio", extra="redis")
            # RESP2: the replies are parsed here as lists (RESP3 would make XREADGROUP's a map).
            self._client = redis_asyncio.from_url(self.url, socket_keepalive=True, protocol=2)
            # The reader: the same connections, but XREADGROUP's reply as Redis sent it (each
            # entry's fields a flat list), not turned into a tuple and a dict per message by
            # redis-py; kept apart so that app.redis.xreadgroup() answers as redis-py's does.
            self._reader = redis_asyncio.Redis(connection_pool=self._client.connection_pool)
            self._reader.set_response_callback("XREADGROUP", _as_sent)
            # A new run: a consumer restarted under its name first reads its own pending messages.
            self._cursors = {stream: b"0" for stream in self.streams}
            self._claim_cursors = {stream: b"0-0" for stream in self.streams}
            self._joined = False
            self._held = {stream: {} for stream in self.streams}
        await _to_the_end(self._join_group(self._client))
        self._next_claim = loop.time() + self.claim_idle / 4
        if self._refresher is None or self._refresher.done():
            self._refresher = self.listener.spawn(self._refresh_loop(), name=f"{self.name} in-flight refresher")

    async def receive(self, max_messages: int) -> Sequence[RedisStreamMessage]:
        """Every ``claim_idle / 4`` seconds claim abandoned messages, else read new ones (for
        up to ``READ_BLOCK_MS``); never more than ``max_messages``. One call does either, so the
        two never count on the same slots."""
        client = self._client
        if client is None:
            raise NotConnected(f"not connected to {self.log.url}")
        loop = asyncio.get_running_loop()
        try:
            wait_ms = int((self._next_claim - loop.time()) * 1000)
            if wait_ms <= 0:
                self._next_claim = loop.time() + self.claim_idle / 4
                return await self._claim_abandoned(client, max_messages)
            return await self._read(self._reader, max_messages, min(wait_ms, READ_BLOCK_MS))
        except self._response_error as exc:
            if not _is_missing_group(exc):
                raise
            # Gone while connected: XGROUP DESTROY, a flush, or the stream deleted (Redis then
            # ends a blocked read with "UNBLOCKED the stream key no longer exists").
            await self._join_group(client)
            return []

    async def disconnect(self) -> None:
        """Nothing to do after a loss: the client stays, for handlers (``app.redis``) and the
        acknowledgements under way; redis-py drops broken connections and opens new ones on
        the next command. :meth:`close` closes it."""

    async def close(self) -> None:
        """Close the client, once in-flight messages were settled (or given up)."""
        client, self._client, self._reader = self._client, None, None
        try:
            if client is not None:
                await _to_the_end(client.aclose())
        finally:
            await super().close()

    async def wait_before_retry(self, message: BrokerMessage, delay: float) -> bool:
        """Wait ``delay`` seconds, unless shutdown begins first: then the message is not run
        again here but handed back, for another consumer."""
        try:
            await asyncio.wait_for(self.wait_state(SourceState.DRAINING, SourceState.STOPPED), delay)
        except asyncio.TimeoutError:
            return True
        assert isinstance(message, RedisStreamMessage)
        logger.info("shutting down: message %s of %r stays pending for another consumer", message.message_id,
                    message.stream)
        return False

    # ------------------------------------------------------------------ reading and claiming

    async def _read(self, reader: Any, max_messages: int, block_ms: int) -> List[RedisStreamMessage]:
        streams, cursors = self.streams, self._cursors
        count = len(streams)
        if max_messages >= count:
            chosen = cursors
            per_stream = max_messages // count
        else:  # fewer free slots than streams: one message from each of some of them, in turn
            first, self._turn = self._turn % count, self._turn + max_messages
            chosen = {streams[(first + n) % count]: cursors[streams[(first + n) % count]] for n in range(max_messages)}
            per_stream = 1
        # As Redis sent it (see connect()): [[stream, [[id, [name, value, ...]], ...]], ...].
        reply = await reader.xreadgroup(self.group, self.consumer, chosen, count=per_stream, block=block_ms)
        messages: List[RedisStreamMessage] = []
        deleted: List[Tuple[str, List[bytes]]] = []
        for raw_stream, entries in reply or ():
            stream = self._names[raw_stream]
            if cursors[stream] != b">":  # reading its own pending messages first, then new ones
                cursors[stream] = entries[-1][0] if entries else b">"
            gone = self._hold(stream, entries, None, messages)
            if gone:
                deleted.append((stream, gone))
        try:
            for stream, message_ids in deleted:
                await reader.xack(stream, self.group, *message_ids)
        except BaseException:
            self._forget(messages)
            raise
        return messages

    async def _claim_abandoned(self, client: Any, budget: int) -> List[RedisStreamMessage]:
        """Claim messages idle for ``claim_idle`` (their consumer died or stopped), up to
        ``budget``; each counts its earlier deliveries as attempts."""
        messages: List[RedisStreamMessage] = []
        try:
            for stream in self.streams:
                if budget <= 0:
                    break
                held = self._held[stream]
                cursor = self._claim_cursors[stream]
                claimed: List[Tuple[bytes, EntryFields]] = []
                deleted = []
                while budget > 0:
                    reply = await client.xautoclaim(stream, self.group, self.consumer,
                                                    min_idle_time=int(self.claim_idle * 1000), start_id=cursor,
                                                    count=budget)
                    cursor = reply[0]
                    for message_id, fields in reply[1]:
                        if message_id is None:  # Redis 7 drops deleted entries itself (Redis 6.2: nil)
                            continue
                        if not fields:
                            deleted.append(message_id)
                        elif message_id not in held:  # else claimed back while handled here
                            # As XREADGROUP's entries come (see _read): rare enough to redo here.
                            claimed.append((message_id, [part for pair in fields.items() for part in pair]))
                            budget -= 1
                    if cursor in (b"0-0", "0-0"):
                        break
                self._claim_cursors[stream] = cursor
                if deleted:
                    await client.xack(stream, self.group, *deleted)
                if claimed:
                    counts = await self._delivery_counts(client, stream, [entry[0] for entry in claimed])
                    self._hold(stream, claimed, counts, messages)
                    logger.info("claimed %d message(s) of %r left pending by a stopped or dead consumer",
                                len(claimed), stream)
        except BaseException:
            self._forget(messages)
            raise
        return messages

    async def _delivery_counts(self, client: Any, stream: str, message_ids: List[bytes]) -> Dict[bytes, int]:
        """Return how many times each message was delivered (this claim included)."""
        pending = await client.xpending_range(
            stream, self.group, min=min(message_ids), max=max(message_ids),
            count=len(message_ids) + self.max_in_flight, consumername=self.consumer,
        )
        return {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}

    def _hold(self, stream: str, entries: Sequence[Sequence[Any]], deliveries: Dict[bytes, int] | None,
              messages: List[RedisStreamMessage]) -> List[bytes]:
        """Add a message for each of ``entries`` of ``stream`` (``(id, fields as sent)``, see
        :meth:`_read`) to ``messages`` (the delivery counts are ``deliveries``, else 1), but for
        those read again while still held here; return the ids of those deleted from the stream
        while pending (nothing left to handle: to acknowledge). Each message made is held until
        its acknowledgement is sent, or the flow hands it back or dead-letters it, or a command
        of the read fails (:meth:`_forget`)."""
        held = self._held[stream]
        now = asyncio.get_running_loop().time()
        deleted = []
        for message_id, fields in entries:
            if not fields:
                deleted.append(message_id)
            elif message_id not in held:
                held[message_id] = now
                attempt = 1 if deliveries is None else max(deliveries.get(message_id, 1), 1)
                messages.append(RedisStreamMessage(self, stream, message_id, fields, attempt))
        return deleted

    def _forget(self, messages: List[RedisStreamMessage]) -> None:
        """Stop holding ``messages`` (see :meth:`_hold`): acknowledged, or never handed to the
        flow."""
        held_by_stream = self._held
        if len(held_by_stream) == 1:  # one stream: no lookup per message
            [held] = held_by_stream.values()
            for message in messages:
                held.pop(message.id, None)
            return
        for message in messages:
            held_by_stream[message.stream].pop(message.id, None)

    async def _join_group(self, client: Any) -> None:
        """Create the group on every stream (and the stream) unless it exists. A new group
        starts at the beginning of the stream: events published before the first worker
        started count. Says so if the group had to be made again after this source joined it."""
        created = []
        for stream in self.streams:
            try:
                await client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except self._response_error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                created.append(stream)
        if created and self._joined:
            streams = ", ".join(repr(stream) for stream in created)
            self.log.made_again(
                f"consumer group {self.group!r} of stream {streams}",
                "the stream or the group was deleted, or Redis restarted without its data",
            )
            for stream in created:
                self._cursors[stream] = b">"
        self._joined = True

    # ------------------------------------------------------------------ settling

    def _spawn_drained(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        return self.listener.spawn(coro, name=f"{self.name} acknowledgements", drain=True)

    async def _send_acks(self, messages: List[RedisStreamMessage]) -> None:
        """Acknowledge ``messages`` (a batch of :class:`AckBatcher`): one XACK per stream, in a
        pipeline for several; the messages are no longer held once it got through (or the
        source closed)."""
        if len(self.streams) == 1:
            ids = {self.streams[0]: [message.id for message in messages]}
        else:
            ids = {}
            for message in messages:
                ids.setdefault(message.stream, []).append(message.id)

        async def send(client: Any) -> None:
            if len(ids) == 1:
                [(stream, message_ids)] = ids.items()
                await client.xack(stream, self.group, *message_ids)
                return
            async with client.pipeline(transaction=False) as pipe:
                for stream, message_ids in ids.items():
                    pipe.xack(stream, self.group, *message_ids)
                await pipe.execute()

        try:
            await self._until_sent(f"acknowledge {len(messages)} message(s)", send)
        finally:
            self._forget(messages)

    async def _dead_letter(self, message: RedisStreamMessage, target: str, reason: str, error: BaseException) -> None:
        if reason == HANDLER_FAILED:
            text, attempts = error_text(error), message.attempt
        else:  # the handler did not run this time
            text = f"no route matches event path {message.path!r}" if reason == NO_ROUTE else str(error)
            attempts = message.attempt - 1
        entry = dead_letter_fields(message.fields, reason=reason, error=text, stream=message.stream,
                                   message_id=message.id, group=self.group, consumer=self.consumer,
                                   attempts=attempts)

        async def move(client: Any) -> None:
            # One transaction: the message is never both acknowledged and missing from the dead letters.
            async with client.pipeline(transaction=True) as pipe:
                pipe.xadd(target, entry)
                pipe.xack(message.stream, self.group, message.id)
                await pipe.execute()

        await self._until_sent("dead-letter a message", move)

    async def _make_claimable(self, message: RedisStreamMessage, delay: float) -> None:
        """Hand ``message`` back: it stays pending here, with an idle time that lets other
        consumers claim it after ``delay`` seconds (``XCLAIM ... IDLE``, to this consumer)."""
        touched = self._held[message.stream].get(message.id)
        client = self._client
        # Only a message refreshed lately is surely still this consumer's: one that was not may
        # have been claimed by another, and is claimable anyway.
        if touched is None or client is None or asyncio.get_running_loop().time() - touched >= self.claim_idle / 2:
            return
        idle_ms = int(max(self.claim_idle - delay, 0.0) * 1000)
        await client.xclaim(message.stream, self.group, self.consumer, 0, [message.id], idle=idle_ms, justid=True)

    async def _until_sent(self, what: str, command: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``command(client)`` until it gets through, waiting with backoff while Redis is
        away (one WARNING line, at the first failure). Raises ``CancelledError`` when the task
        was asked to cancel, even if redis-py swallowed the request, and
        :class:`~tiny_listener.sources.NotConnected` once the source is closed."""
        delays = None
        while True:
            client = self._client
            if client is None:
                raise NotConnected(f"could not {what}: the source is closed")
            try:
                return await command(client)
            except self._connection_errors as exc:
                if _cancel_requested():
                    raise asyncio.CancelledError from exc
                if delays is None:
                    delays = self._reconnect_delays()
                    logger.warning("Redis at %s is unreachable: could not %s (%r); trying again until it is back",
                                   self.log.url, what, exc)
                await asyncio.sleep(next(delays))

    # ------------------------------------------------------------------ crash recovery

    async def _refresh_loop(self) -> None:
        """Every ``claim_idle / 4``, keep the messages handled here for a while from being
        claimed by other consumers, however long their handlers (or retries) take."""
        while True:
            await asyncio.sleep(self.claim_idle / 4)  # a timer, not synchronisation
            client = self._client
            if client is None:
                return
            try:
                await self._refresh(client)
            except self._connection_errors:
                pass  # the intake reports the outage and reconnects
            except self._response_error as exc:
                if not _is_missing_group(exc):
                    logger.error("could not refresh in-flight messages: %r", exc)
            if _cancel_requested():  # swallowed by redis-py: nobody would cancel this loop again
                raise asyncio.CancelledError

    async def _refresh(self, client: Any) -> None:
        """Reset the idle time of messages handled here for a while, so no one claims them."""
        now = asyncio.get_running_loop().time()
        stale_before = now - self.claim_idle / 2
        stale: Dict[str, List[bytes]] = {}
        for stream, held in self._held.items():
            for message_id, refreshed in held.items():
                if refreshed <= stale_before:
                    stale.setdefault(stream, []).append(message_id)
        for stream, message_ids in stale.items():
            # Idle for a quarter of claim_idle at least: a message another consumer has just
            # claimed (this one having been too slow to refresh it) is not taken back.
            await client.xclaim(stream, self.group, self.consumer, int(self.claim_idle * 250), message_ids,
                                justid=True)
            held = self._held[stream]
            for message_id in message_ids:
                if message_id in held:
                    held[message_id] = now


RedisStreamConfig = RedisStreamSource
"""The settings of a Redis Streams listener, as they were named before sources: they are the
attributes of its :class:`RedisStreamSource` (``app.config`` is ``app.source``)."""


async def _to_the_end(awaitable: Awaitable[T]) -> T:
    """Await a redis-py command without ever cancelling it: if the caller is cancelled, the
    command still runs to its end (it is bounded), then the cancellation goes on."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(retrieve_exception)
        await asyncio.wait([task])
        raise


def _as_sent(response: Any, **options: Any) -> Any:
    """A redis-py response callback that keeps the reply as Redis sent it."""
    return response


def _cancel_requested() -> bool:
    """True if the current task was asked to cancel (Python 3.11+ can tell, even when the
    request was swallowed)."""
    task = asyncio.current_task()
    return task is not None and bool(getattr(task, "cancelling", lambda: 0)())


def _is_missing_group(exc: BaseException) -> bool:
    """Whether a Redis error says the group, or its stream, is gone."""
    return str(exc).startswith(("NOGROUP", "UNBLOCKED the stream key no longer exists"))
