"""RedisStreamListener: workers in a Redis Streams consumer group, at-least-once.

Every worker process joins the group and reads with XREADGROUP no more messages than it has
free in-flight slots. A message is acknowledged (XACK) only after its handler succeeded; a
failing handler is retried with backoff, then the message is moved to a dead-letter stream
and acknowledged in one transaction. Messages left pending by a consumer that died are
claimed (XAUTOCLAIM) once idle for ``claim_idle`` seconds; the ones this process is still
handling are kept fresh so that live work is not claimed away.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, Hashable, Iterable, Iterator, List, Sequence, Tuple, TypeVar, Union

from .._types import EventData, PathParams
from ..codecs import Codec
from ..context import Context
from ..delivery import NO_ROUTE, DeadLetter, DeliverySettings, Retry, after_failure, error_text
from ..errors import EventNotFound
from ..listener import Listener
from ..optional import require
from ._acks import AckBatcher
from ._config import DEFAULT_DEAD_LETTER, DEFAULT_GROUP, DEFAULT_URL, OrderKey, RedisStreamConfig
from ._flow import InFlightLimit, KeyedLocks
from ._message import REDELIVERED_TOO_OFTEN, Fields, UndeliverableMessage, dead_letter_fields, decode_event

logger = logging.getLogger("tiny_listener.redis")

CTXType = TypeVar("CTXType", bound=Context)
T = TypeVar("T")

READ_BLOCK_MS = 250
"""How long one XREADGROUP waits for new messages: at shutdown, the read in progress is let
finish rather than cancelled, so this bounds how long stopping the intake takes."""

_OrderKeyOf = Callable[[str, PathParams, EventData], Union[Hashable, None]]


class RedisStreamListener(DeliverySettings, Listener[CTXType]):
    """Handle the events published to Redis ``streams`` as one consumer of ``group``.

    Start as many processes as wanted, on as many machines: each message is handled by one of
    them, at least once. See :class:`RedisStreamConfig` for every parameter. A handler sees the
    message in ``event.ctx.scope``: ``stream``, ``message_id``, ``attempt`` (1 for the first
    run) and ``fields``; ``app.redis`` is the listener's Redis client while it runs.
    """

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
        dead_letter: str = DEFAULT_DEAD_LETTER,
        claim_idle: float = 30.0,
        reconnect_backoff: float = 0.2,
        order_by: Union[str, OrderKey, None] = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        super().__init__(max_event_history=max_event_history, shutdown_timeout=shutdown_timeout)
        # Checked and kept as the other broker listeners do: app.max_in_flight, app.max_retries...
        self._set_delivery_settings(max_in_flight=max_in_flight, max_retries=max_retries,
                                    retry_backoff=retry_backoff, reconnect_backoff=reconnect_backoff)
        optional: Dict[str, Any] = {}
        if consumer is not None:
            optional["consumer"] = consumer
        if codec is not None:
            optional["codec"] = codec
        self.config = RedisStreamConfig(
            url=url,
            streams=(streams,) if isinstance(streams, str) else tuple(streams),
            group=group,
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            dead_letter=dead_letter,
            claim_idle=claim_idle,
            reconnect_backoff=reconnect_backoff,
            order_by=order_by,
            **optional,
        )
        self._order_key = _order_key_function(order_by)
        self._slots = InFlightLimit(max_in_flight)
        self._key_locks = KeyedLocks()
        # (stream, message id) -> loop time it was last delivered to or refreshed by this consumer.
        self._in_flight: Dict[Tuple[str, bytes], float] = {}
        self._client: Any = None
        self._acks: AckBatcher | None = None
        self._stopping: asyncio.Event | None = None
        self._connection_errors: Tuple[type[BaseException], ...] = (OSError,)
        self._response_error: type[Exception] = Exception

    # ------------------------------------------------------------------ public

    @property
    def consumer(self) -> str:
        """This process's consumer name in the group."""
        return self.config.consumer

    @property
    def redis(self) -> Any:
        """The ``redis.asyncio.Redis`` client of the running listener (for idempotency keys and
        the like); raises ``RuntimeError`` when the listener is not running."""
        if self._client is None:
            raise RuntimeError(f"{self!r} is not running: it has no Redis client")
        return self._client

    @property
    def in_flight(self) -> int:
        """How many messages this process is handling (read and not yet acknowledged)."""
        return len(self._in_flight)

    async def listen(self) -> None:
        """Join the group and read until shutdown; reconnects with backoff when Redis is away."""
        redis_asyncio = require("redis.asyncio", extra="redis")
        redis_exceptions = require("redis.exceptions", extra="redis")
        self._connection_errors = (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError)
        self._response_error = redis_exceptions.ResponseError
        # RESP2: the replies are parsed here as lists (RESP3 would turn XREADGROUP's into a map).
        client = redis_asyncio.from_url(self.config.url, socket_keepalive=True, protocol=2)
        self._client = client
        self._stopping = asyncio.Event()
        self._acks = AckBatcher(self._send_acks, lambda coro: self.spawn(coro, drain=True))
        # Not drained: cancelled after in-flight messages were acknowledged, it closes the client.
        self.spawn(self._close_at_exit(client), name="redis-client-closer")
        refresher = self.spawn(self._refresh_loop(), name="redis-in-flight-refresher")
        self._slots.resume()
        # The reader is never cancelled: cancelling a redis-py command can be swallowed (Python
        # < 3.12's asyncio.wait_for returns the result of a future that finished as it was
        # cancelled) and the reader would then read on. It stops when it sees _stopping.
        reader = asyncio.get_running_loop().create_task(self._read_until_stopped(), name="redis-reader")
        try:
            await asyncio.wait([reader])
            reader.result()
        finally:
            # Stop intake; in-flight messages (including the last read's) finish and are acknowledged.
            self._stopping.set()
            self._slots.interrupt()
            refresher.cancel()
            if not reader.done():
                await asyncio.wait([reader])
                if not reader.cancelled() and reader.exception() is not None:
                    logger.error("reading from Redis failed while stopping", exc_info=reader.exception())

    async def _read_until_stopped(self) -> None:
        try:
            await self._ensure_groups_reconnecting()
            logger.info(
                "consumer %s of group %r reading %s at %s",
                self.consumer, self.config.group, ", ".join(self.config.streams), self.config.url,
            )
            await self._read_loop()
        except _Stopping:
            return

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        """Read new messages, and every ``claim_idle / 4`` claim abandoned ones, never more than
        there are free slots. One loop does both, so the two never count on the same slots."""
        config = self.config
        loop = asyncio.get_running_loop()
        stream_count = len(config.streams)
        # Read once half the slots are free, not at the first one: fewer, fuller reads.
        read_when_free = max(stream_count, config.max_in_flight // 2)
        names = {stream.encode(): stream for stream in config.streams}
        # "0" first: a consumer restarted under the same name gets its own pending messages back.
        cursors: Dict[str, Union[bytes, str]] = {stream: b"0" for stream in config.streams}
        claim_cursors: Dict[str, Union[bytes, str]] = {stream: b"0-0" for stream in config.streams}
        claim_period = config.claim_idle / 4
        next_claim = loop.time() + claim_period
        failures: Iterator[float] | None = None
        assert self._stopping is not None
        while not self._stopping.is_set():
            await self._slots.wait_free(read_when_free)
            if self._stopping.is_set():
                return
            try:
                wait_ms = int((next_claim - loop.time()) * 1000)
                if wait_ms <= 0:
                    for stream in config.streams:
                        claim_cursors[stream] = await self._claim_abandoned(stream, claim_cursors[stream])
                    next_claim = loop.time() + claim_period
                    continue
                reply = await self._client.xreadgroup(
                    config.group, config.consumer, cursors, count=self._slots.free // stream_count,
                    block=min(wait_ms, READ_BLOCK_MS),
                )
            except self._connection_errors as exc:
                failures = failures or self._reconnect_delays()
                await self._wait_before_reconnect("read", exc, failures, intake=True)
                continue
            except self._response_error as exc:
                if not _is_missing_group(exc):
                    raise
                logger.warning("consumer group %r is gone (Redis restarted without its data?): creating it again",
                               config.group)
                await self._ensure_groups_reconnecting()
                cursors = {stream: b">" for stream in config.streams}
                continue
            if failures is not None:
                logger.info("reconnected to Redis at %s", config.url)
                failures = None
            for raw_stream, entries in _stream_entries(reply):
                stream = names[raw_stream]
                if cursors[stream] != b">":
                    cursors[stream] = entries[-1][0] if entries else b">"
                for message_id, fields in entries:
                    if fields:
                        self._start(stream, message_id, fields, previous_deliveries=0)
                    else:  # deleted from the stream while pending: nothing left to handle
                        self._forget(stream, message_id)

    def _start(self, stream: str, message_id: bytes, fields: Fields, previous_deliveries: int) -> bool:
        """Handle a message in a free slot; return False if this process handles it already."""
        key = (stream, message_id)
        if key in self._in_flight:  # claimed back while this process still handles it
            return False
        self._slots.take()
        self._in_flight[key] = asyncio.get_running_loop().time()
        self.spawn(self._handle_message(stream, message_id, fields, previous_deliveries), drain=True)
        return True

    def _forget(self, stream: str, message_id: bytes) -> None:
        """Acknowledge a pending message deleted from the stream: there is nothing to handle."""
        self.spawn(self._with_reconnect("acknowledge a deleted message",
                                        lambda: self._client.xack(stream, self.config.group, message_id)),
                   drain=True)

    # ------------------------------------------------------------------ handling

    async def _handle_message(self, stream: str, message_id: bytes, fields: Fields, previous: int) -> None:
        try:
            await self._deliver(stream, message_id, fields, previous)
        finally:
            del self._in_flight[(stream, message_id)]
            self._slots.release()

    async def _deliver(self, stream: str, message_id: bytes, fields: Fields, previous: int) -> None:
        try:
            path, data = decode_event(fields, self.config.codec)
        except UndeliverableMessage as exc:
            await self._dead_letter(stream, message_id, fields, exc.reason, str(exc), 0)
            return
        if previous > self.config.max_retries:
            detail = f"delivered {previous} times without being acknowledged: its consumers stopped or died"
            await self._dead_letter(stream, message_id, fields, REDELIVERED_TOO_OFTEN, detail, previous)
            return
        if self._order_key is None:  # no route lookup here: trigger_event does it, once
            await self._run_with_retries(stream, message_id, fields, path, data, previous)
            return
        try:
            _, params = self.match_route(path)
        except EventNotFound:
            await self._dead_letter(stream, message_id, fields, NO_ROUTE, f"no route matches event path {path!r}", 0)
            return
        key = self._order_key(path, params, data)
        if key is None:
            await self._run_with_retries(stream, message_id, fields, path, data, previous)
        else:
            async with self._key_locks.hold(key):
                await self._run_with_retries(stream, message_id, fields, path, data, previous)

    async def _run_with_retries(
        self, stream: str, message_id: bytes, fields: Fields, path: str, data: EventData, previous: int
    ) -> None:
        """Run the event until its handler succeeds (then acknowledge it) or the retries are used
        up (then dead-letter it). Earlier unacknowledged deliveries count as attempts."""
        assert self._acks is not None
        config = self.config
        attempt = previous + 1
        while True:
            ctx = self.new_ctx(scope={"stream": stream, "message_id": message_id, "attempt": attempt, "fields": fields})
            try:
                await ctx.trigger_event(path, data=data)
            except EventNotFound:
                ctx.drop()
                detail = f"no route matches event path {path!r}"
                await self._dead_letter(stream, message_id, fields, NO_ROUTE, detail, attempt - 1)
                return
            except Exception as exc:  # the core has logged it with the event's path and handler
                step = after_failure(attempt, config.max_retries, config.retry_backoff, self.max_retry_delay)
                if isinstance(step, DeadLetter):
                    await self._dead_letter(stream, message_id, fields, step.reason, error_text(exc), attempt)
                    return
                assert isinstance(step, Retry)
                logger.warning("event %r (message %s of %r) failed on attempt %d of %d: retrying in %.2fs",
                               path, message_id.decode(), stream, attempt, config.max_retries + 1, step.delay)
                if await self._stopping_within(step.delay):
                    logger.info("shutting down: message %s of %r stays pending for another consumer",
                                message_id.decode(), stream)
                    return
                attempt = step.attempt
                continue
            await self._acks.ack(stream, message_id)
            return

    async def _stopping_within(self, delay: float) -> bool:
        """Wait ``delay`` seconds; return True at once if the listener starts shutting down."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except asyncio.TimeoutError:
            return False
        return True

    async def _dead_letter(
        self, stream: str, message_id: bytes, fields: Fields, reason: str, error: str, attempts: int
    ) -> None:
        """Move the message to its dead-letter stream and acknowledge it, in one transaction."""
        config = self.config
        target = config.dead_letter_stream(stream)
        entry = dead_letter_fields(fields, reason=reason, error=error, stream=stream, message_id=message_id,
                                   group=config.group, consumer=config.consumer, attempts=attempts)

        async def move() -> None:
            # One transaction: the message is never both lost and acknowledged.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(target, entry)
                pipe.xack(stream, config.group, message_id)
                await pipe.execute()

        await self._with_reconnect("dead-letter a message", move)
        logger.warning("message %s of %r dead-lettered to %r (%s): %s", message_id.decode(), stream, target, reason,
                       error)

    async def _send_acks(self, ids: Dict[str, List[bytes]]) -> None:
        group = self.config.group

        async def send() -> None:
            if len(ids) == 1:
                [(stream, message_ids)] = ids.items()
                await self._client.xack(stream, group, *message_ids)
                return
            async with self._client.pipeline(transaction=False) as pipe:
                for stream, message_ids in ids.items():
                    pipe.xack(stream, group, *message_ids)
                await pipe.execute()

        await self._with_reconnect("acknowledge messages", send)

    # ------------------------------------------------------------------ crash recovery

    async def _refresh_loop(self) -> None:
        """Every ``claim_idle / 4``, keep the messages handled here for a while from being
        claimed by other consumers, however long their handlers take."""
        assert self._stopping is not None
        while not self._stopping.is_set():  # checked too in case a cancellation is swallowed
            await asyncio.sleep(self.config.claim_idle / 4)  # a timer, not synchronisation
            try:
                await self._refresh_in_flight()
            except self._connection_errors:
                continue  # the read loop reports the outage and reconnects
            except self._response_error as exc:
                if not _is_missing_group(exc):
                    logger.error("could not refresh in-flight messages: %s", exc)

    async def _refresh_in_flight(self) -> None:
        """Reset the idle time of messages handled here for a while, so no one claims them."""
        now = asyncio.get_running_loop().time()
        stale_before = now - self.config.claim_idle / 2
        stale: Dict[str, List[bytes]] = {}
        for (stream, message_id), refreshed in self._in_flight.items():
            if refreshed <= stale_before:
                stale.setdefault(stream, []).append(message_id)
        for stream, message_ids in stale.items():
            # Idle for a quarter of claim_idle at least: a message another consumer has just
            # claimed (this one having been too slow to refresh it) is not taken back.
            await self._client.xclaim(stream, self.config.group, self.consumer,
                                      int(self.config.claim_idle * 250), message_ids, justid=True)
            for message_id in message_ids:
                if (stream, message_id) in self._in_flight:
                    self._in_flight[(stream, message_id)] = now

    async def _claim_abandoned(self, stream: str, cursor: Union[bytes, str]) -> Union[bytes, str]:
        """Claim idle messages of ``stream`` while slots are free; return where to go on next time."""
        config = self.config
        while self._slots.free > 0:
            reply = await self._client.xautoclaim(stream, config.group, config.consumer,
                                                  min_idle_time=int(config.claim_idle * 1000),
                                                  start_id=cursor, count=self._slots.free)
            cursor, entries = reply[0], reply[1]
            if entries:
                deliveries = await self._delivery_counts(stream, [message_id for message_id, _ in entries])
                claimed = 0
                for message_id, fields in entries:
                    if not fields:
                        self._forget(stream, message_id)
                    elif self._start(stream, message_id, fields, max(deliveries.get(message_id, 1) - 1, 0)):
                        claimed += 1
                logger.info("claimed %d message(s) of %r left pending by a stopped or dead consumer", claimed, stream)
            if cursor in (b"0-0", "0-0"):
                break
        return cursor

    async def _delivery_counts(self, stream: str, message_ids: List[bytes]) -> Dict[bytes, int]:
        """Return how many times each message was delivered (this claim included)."""
        pending = await self._client.xpending_range(
            stream, self.config.group, min=min(message_ids), max=max(message_ids),
            count=len(message_ids) + self._slots.limit, consumername=self.consumer,
        )
        return {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}

    # ------------------------------------------------------------------ connection

    async def _ensure_groups_reconnecting(self) -> None:
        await self._with_reconnect("create the consumer group", self._ensure_groups, intake=True)

    async def _ensure_groups(self) -> None:
        """Create the group on every stream (and the stream) unless it exists. A new group starts
        at the beginning of the stream: events published before the first worker started count."""
        for stream in self.config.streams:
            try:
                await self._client.xgroup_create(stream, self.config.group, id="0", mkstream=True)
            except self._response_error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _with_reconnect(
        self, what: str, operation: Callable[[], Awaitable[T]], intake: bool = False
    ) -> T:
        """Run ``operation`` until it gets through, waiting with backoff while Redis is away.

        With ``intake`` (reading, joining the group) it gives up by raising :class:`_Stopping`
        once the listener stops; otherwise (acknowledging, dead-lettering) it goes on until the
        shutdown deadline cancels it.
        """
        failures: Iterator[float] | None = None
        while True:
            try:
                result = await operation()
            except self._connection_errors as exc:
                failures = failures or self._reconnect_delays()
                await self._wait_before_reconnect(what, exc, failures, intake)
                continue
            if failures is not None and intake:
                logger.info("reconnected to Redis at %s", self.config.url)
            return result

    async def _wait_before_reconnect(
        self, what: str, exc: BaseException, delays: Iterator[float], intake: bool = False
    ) -> None:
        """Wait before trying Redis again. Raises :class:`_Stopping` for ``intake`` when the
        listener stops meanwhile, and ``CancelledError`` if a cancellation of the current task
        was swallowed by redis-py (then nobody would cancel this loop again)."""
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise asyncio.CancelledError
        delay = next(delays)
        logger.warning("Redis at %s is unreachable (could not %s: %s); retrying in %.2fs",
                       self.config.url, what, exc or type(exc).__name__, delay)
        if intake:
            if await self._stopping_within(delay):
                raise _Stopping
        else:
            await asyncio.sleep(delay)

    async def _close_at_exit(self, client: Any) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled, last, at shutdown
        finally:
            if self._client is client:
                self._client = None
            await client.aclose()


class _Stopping(Exception):
    """The listener stops: the reader gives up waiting for Redis."""


def _is_missing_group(exc: BaseException) -> bool:
    return str(exc).startswith("NOGROUP")


def _stream_entries(reply: Any) -> Iterable[Tuple[bytes, List[Tuple[bytes, Fields]]]]:
    """The ``(stream, entries)`` pairs of an XREADGROUP reply (RESP2: the client is ours)."""
    return reply or ()


def _order_key_function(order_by: Union[str, OrderKey, None]) -> _OrderKeyOf | None:
    """Turn ``order_by`` into ``(path, params, data) -> hashable key or None``."""
    if order_by is None:
        return None
    if callable(order_by):
        by_function = order_by

        def from_function(path: str, params: PathParams, data: EventData) -> Hashable | None:
            return _hashable(by_function(path, data))

        return from_function
    name = order_by

    def from_name(path: str, params: PathParams, data: EventData) -> Hashable | None:
        if name in params:
            return _hashable(params[name])
        return _hashable(data.get(name))

    return from_name


def _hashable(key: Any) -> Hashable | None:
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key  # type: ignore[no-any-return]
