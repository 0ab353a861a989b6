"""NATS JetStream on the one broker delivery flow: a durable pull consumer whose messages
become events (see :mod:`tiny_listener.sources.broker` for the flow).

What is NATS's own is here: connecting with nats-py, creating the stream, dead-letter stream
and consumer, pulling batches, and :class:`NATSMessage` (ack, nak with a delay, term, progress
acknowledgements, dead letters published with their headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Coroutine, List, Mapping, Sequence, Set, Tuple, Type

from .._types import Scope
from ..codecs import Codec
from ..delivery import REPLY_TO, data_to_payload
from ..errors import NoReply
from ..optional import require
from ..sources.broker import BrokerMessage, BrokerSource, NotConnected
from . import _subjects as subjects_

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import PubAck
    from nats.js.client import JetStreamContext

logger = logging.getLogger("tiny_listener.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"


def _delivery_of(message: Msg) -> Tuple[str, int, int]:
    """Return the stream, delivery count and stream sequence of a JetStream message, read from
    its reply (ack) subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`` or,
    with a domain and an account hash, ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>...``.

    nats-py's ``Msg.metadata`` parses the same subject into two frozen dataclasses and a
    ``datetime``, of which the flow needs three fields: this is per message. Raises what
    ``Msg.metadata`` raises for a subject of another form (not a JetStream message)."""
    tokens = (message.reply or "").split(".")
    count = len(tokens)
    if count >= 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        if count == 9:
            return tokens[2], int(tokens[4]), int(tokens[5])
        if count >= 11:
            return tokens[4], int(tokens[6]), int(tokens[7])
    metadata = message.metadata  # raises NotJSMessageError
    return metadata.stream, metadata.num_delivered, metadata.sequence.stream


class NATSMessage(BrokerMessage):
    """A JetStream message: its subject is the event path, its delivery count the attempt,
    its stream sequence (a number) the message id."""

    __slots__ = ("message", "source", "stream")

    def __init__(self, message: Msg, source: NATSSource) -> None:
        # BrokerMessage's attributes, set here directly: this runs for every message.
        self.stream, self.attempt, self.message_id = _delivery_of(message)
        self.path = message.subject
        self.payload = message.data
        self.message = message
        self.source = source

    def scope(self) -> Scope:
        return {"message": self.message, "attempt": self.attempt}

    def ack(self) -> Coroutine[Any, Any, None]:
        # nats-py's own coroutine, not one awaiting it: one frame less for every message.
        return self.message.ack()

    async def retry(self, delay: float, error: BaseException) -> None:
        await self.message.nak(delay=delay)

    async def release(self, delay: float = 0.0) -> None:
        await self.message.nak(delay=delay or None)

    async def drop(self) -> None:
        await self.message.term()

    async def in_progress(self) -> None:
        await self.message.in_progress()

    def reply_address(self) -> str | None:
        # The message's own reply subject is JetStream's ack subject: a request names its
        # inbox in a header instead.
        headers = self.message.headers
        return headers.get(REPLY_TO) if headers else None

    async def reply(self, payload: bytes) -> None:
        nc = self.source._nc
        address = self.reply_address()
        if nc is None or address is None:
            raise NotConnected(f"not connected to {self.source.log.url}")
        await nc.publish(address, payload)

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> None:
        js = self.source._js
        if js is None:
            raise NotConnected(f"not connected to {self.source.log.url}")
        headers = subjects_.dead_letter_headers(self.message.headers, self.path, reason, error, self.attempt,
                                                self.stream, int(self.message_id))
        await js.publish(target, self.payload, headers=headers)


class NATSSource(BrokerSource):
    """Consume JetStream ``stream`` through the durable pull consumer ``durable``; every
    message becomes an event whose path is its subject. See :class:`~tiny_listener.nats.NATSListener`
    for the behaviour, and :class:`~tiny_listener.sources.broker.BrokerSource` for the
    settings shared by every broker.

    ``dead_letter=True`` dead-letters to ``deadletter.<stream>``, kept in the ``<stream>_dead``
    stream created with the stream.
    """

    kind = "nats"
    broker = "NATS"
    url_schemes = ("nats", "tls", "ws", "wss")
    url_form = "nats://host[:port] (or tls://, ws://, wss://)"
    client_loggers = ("nats.aio.client",)

    # How long one pull request waits for messages; also how soon a lost connection is seen
    # by a consumer that has nothing to do.
    fetch_timeout: float = 1.0
    # After this many empty pulls in a row, check that the consumer still exists.
    idle_pulls_between_checks: int = 5

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
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
        ack_wait: float = 30.0,
        connection_name: str | None = None,
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
        self.stream = stream
        self.durable = durable
        self.subjects: List[str] | None = list(subjects) if subjects is not None else None
        self.create_stream = create_stream
        self.ack_wait = ack_wait
        self.connection_name = connection_name or f"tiny-listener {stream}/{durable}"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._idle_pulls = 0
        self._request_subjects: Set[str] = set()

    @property
    def progress_interval(self) -> float:  # type: ignore[override]
        """A handler running longer than half of ``ack_wait`` keeps its message with
        progress acknowledgements."""
        return self.ack_wait / 2

    # ------------------------------------------------------------------ public helpers

    def stream_subjects(self) -> List[str]:
        """Return the subjects a created stream listens on: ``subjects``, else one per route."""
        return list(self.subjects) if self.subjects is not None else subjects_.route_subjects(self.listener.routes)

    async def publish(self, path: str, data: Any = None, *, headers: Mapping[str, str] | None = None) -> PubAck:
        """Publish an event ``path`` (the subject) with ``data`` encoded by the codec; return
        JetStream's acknowledgement once a stream stored it.

        Raises :class:`NotConnected` while there is no connection, and
        ``nats.js.errors.NoStreamResponseError`` (``nats.errors.NoRespondersError`` with
        nats-py before 2.10) if no stream takes the subject.
        """
        js = self._js
        if js is None or self._nc is None or not self._nc.is_connected:
            raise NotConnected(f"not connected to {self.log.url}")
        return await js.publish(path, data_to_payload(data, self.codec), headers=dict(headers) if headers else None)

    async def request(
        self, path: str, data: Any = None, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send ``data`` to ``path`` as a request and return the reply decoded by the codec.

        A subject a stream takes (JetStream is asked once per subject) is published to
        JetStream with the requester's inbox in the ``x-reply-to`` header: the request is
        stored, and the handler that takes it (here or in another process) publishes its
        result to the inbox before acknowledging it. A subject no stream takes is sent as a
        core NATS request (``nc.request``), which any NATS responder answers.

        Raises :class:`~tiny_listener.NoReply` when nobody takes the subject or no reply comes
        within ``timeout`` seconds, :class:`NotConnected` while there is no connection.
        """
        nats = require("nats", extra="nats")
        nc, js = self._nc, self._js
        if js is None or nc is None or not nc.is_connected:
            raise NotConnected(f"not connected to {self.log.url}")
        payload = data_to_payload(data, self.codec)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await self._stored(js, path):
            reply = await self._core_request(path, payload, timeout, headers)
            return self.codec.decode(reply.data)
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox, max_msgs=1)
        try:
            try:
                await js.publish(path, payload, timeout=timeout, headers={**(headers or {}), REPLY_TO: inbox})
            except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
                # The stream was deleted since: nats-py raises either, by version.
                self._request_subjects.discard(path)
                reply = await self._core_request(path, payload, max(deadline - loop.time(), 0.001), headers)
            except nats.errors.TimeoutError:
                raise NoReply(path, timeout=timeout) from None
            else:
                try:
                    reply = await subscription.next_msg(timeout=max(deadline - loop.time(), 0.001))
                except nats.errors.TimeoutError:
                    raise NoReply(path, timeout=timeout) from None
        finally:
            if not nc.is_closed:
                await subscription.unsubscribe()
        return self.codec.decode(reply.data)

    async def _stored(self, js: JetStreamContext, subject: str) -> bool:
        """True if a stream takes ``subject`` (asked once per subject while it does)."""
        if subject in self._request_subjects:
            return True
        nats = require("nats", extra="nats")
        try:
            await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            return False
        if len(self._request_subjects) >= 1024:
            self._request_subjects.clear()
        self._request_subjects.add(subject)
        return True

    async def _core_request(
        self, path: str, payload: bytes, timeout: float, headers: Mapping[str, str] | None
    ) -> Msg:
        nats = require("nats", extra="nats")
        nc = self._nc
        if nc is None:
            raise NotConnected(f"not connected to {self.log.url}")
        try:
            return await nc.request(path, payload, timeout=timeout, headers=dict(headers) if headers else None)
        except nats.errors.NoRespondersError:
            raise NoReply(path, reason="no stream takes the subject and nobody subscribes to it") from None
        except nats.errors.TimeoutError:
            raise NoReply(path, timeout=timeout) from None

    async def open_publisher(self) -> None:
        """Connect for :meth:`publish` and :meth:`request` only: no stream, no consumer."""
        self._nc = nc = await self._connect()
        self._js = nc.jetstream()

    # ------------------------------------------------------------------ the broker's part of the flow

    def connection_errors(self) -> Tuple[Type[BaseException], ...]:
        nats = require("nats", extra="nats")
        return (OSError, asyncio.TimeoutError, nats.errors.Error)

    def intake(self) -> str:
        return f"stream {self.stream!r} as {self.durable!r}"

    def default_dead_letter_target(self) -> str:
        return subjects_.dead_letter_subject(self.stream)

    async def connect(self) -> None:
        """Connect, make sure the stream, dead-letter stream and consumer exist, and bind to
        the consumer."""
        self._nc = nc = await self._connect()
        js = nc.jetstream()
        self._subscription = await self._set_up(js)
        self._js = js
        self._idle_pulls = 0

    async def _connect(self) -> Client:
        nats = require("nats", extra="nats")
        nc: Client = await nats.connect(
            self.url,
            allow_reconnect=False,  # reconnecting is the flow's, with backoff and a log line
            # One quick attempt, then NoServersError: nats-py would otherwise retry the first
            # connection 60 times, 2 s apart, without a word.
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            connect_timeout=2,
            name=self.connection_name,
            error_cb=_client_error,
        )
        return nc

    async def _set_up(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        """Create the stream, dead-letter stream and consumer if needed; bind to the consumer."""
        nats = require("nats", extra="nats")
        api = nats.js.api
        if self.create_stream:
            await self._ensure_stream(js, self.stream, self.stream_subjects())
            target = self.dead_letter_target
            if target is not None:
                await self._ensure_stream(js, subjects_.dead_letter_stream(self.stream), [target])
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # The flow counts deliveries itself and dead-letters; a server-side limit would
            # strand messages where nobody sees them.
            max_deliver=-1,
        )
        filters = self.stream_subjects()
        if len(filters) == 1:
            config.filter_subject = filters[0]
        try:
            await js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(self.stream, config=config)
        return await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def _ensure_stream(self, js: JetStreamContext, name: str, subjects: List[str]) -> None:
        nats = require("nats", extra="nats")
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(name=name, subjects=subjects)
            self.log.logger.info("created stream %r on subjects %s", name, subjects)

    async def receive(self, max_messages: int) -> Sequence[NATSMessage]:
        """Pull up to ``max_messages``, waiting up to ``fetch_timeout``; after
        ``idle_pulls_between_checks`` empty pulls, check that the consumer still exists (a
        pull on a deleted consumer only times out)."""
        nats = require("nats", extra="nats")
        nc, subscription = self._nc, self._subscription
        if nc is None or subscription is None or nc.is_closed:
            raise nats.errors.ConnectionClosedError
        try:
            try:
                messages = await subscription.fetch(max_messages, timeout=self.fetch_timeout)
            except asyncio.TimeoutError:  # nats.errors.TimeoutError, or a plain one from a batch pull
                self._idle_pulls += 1
                if self._idle_pulls % self.idle_pulls_between_checks == 0:
                    await subscription.consumer_info()
                return []
        except nats.js.errors.NotFoundError:
            # The server answered: the consumer (or its stream) was deleted, or the server
            # lost its data. Not an outage: set up again on this connection.
            await self._set_up_again(subscription)
            return []
        self._idle_pulls = 0
        return [NATSMessage(message, self) for message in messages]

    async def _set_up_again(self, gone: JetStreamContext.PullSubscription) -> None:
        """Make the stream and consumer again after the server said the consumer is gone, and
        bind to it. Messages in flight are acknowledged to a consumer that no longer exists:
        the new one, which starts at the beginning of the stream, delivers them again."""
        js = self._js
        if js is None:
            raise NotConnected(f"not connected to {self.log.url}")
        self._subscription = await self._set_up(js)
        self._idle_pulls = 0
        self.log.made_again(
            f"consumer {self.durable!r} of stream {self.stream!r}",
            "the stream or the consumer was deleted, or the server lost its data",
        )
        with contextlib.suppress(Exception):  # its subscription on the connection only
            await gone.unsubscribe()

    async def disconnect(self) -> None:
        """Flush what is pending (acknowledgements) if the connection is still up, and close it."""
        nc, self._nc, self._js, self._subscription = self._nc, None, None, None
        if nc is None or nc.is_closed:
            return
        if nc.is_connected:
            try:
                await nc.flush(timeout=2)
            except Exception as exc:  # closing anyway; unflushed acks mean redeliveries
                self.log.logger.warning("could not flush acknowledgements before closing: %r", exc)
        await nc.close()


async def _client_error(error: Exception) -> None:
    # nats-py reports a lost connection here first; the flow logs it once, as a warning.
    logger.debug("nats client error: %r", error)
