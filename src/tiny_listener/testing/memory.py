"""``MemoryBroker``: the broker delivery flow with no server behind it, for tests.

A :class:`MemoryBroker` is a broker source (:class:`~tiny_listener.sources.broker.BrokerSource`)
whose messages are kept in memory: ``await broker.publish(path, data)`` goes through the same
flow as a message from NATS or RabbitMQ (decode, route, handler, then acknowledge, retry with
backoff, or dead-letter with a reason), so a test checks its retry and dead-letter behaviour in
milliseconds. Every message published is a :class:`Delivery` that records what happened to it.

    app = Listener()
    broker = app.add_source(MemoryBroker(max_retries=2))

    async with broker:                       # runs app.main() until the block ends
        delivery = await broker.publish("orders.7", {"amount": -1})
        await delivery.settled()
    assert delivery.outcome is Outcome.DEAD_LETTERED and delivery.retry_delays == [0.5, 1.0]
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Dict, List, Sequence, Tuple, Type

from .._types import Scope
from ..codecs import Codec
from ..delivery import data_to_payload
from ..errors import NoReply
from ..sources.broker import BrokerMessage, BrokerSource


class Outcome(str, enum.Enum):
    """How a :class:`Delivery` ended."""

    ACKED = "acked"
    """The handler succeeded (or an ``on_error`` handler took its error)."""
    DEAD_LETTERED = "dead-lettered"
    """Stored in :attr:`MemoryBroker.dead_letters` with its reason."""
    DROPPED = "dropped"
    """Given up without a dead-letter target (``dead_letter=False``): logged and dropped."""


@dataclass
class Delivery:
    """One message published to a :class:`MemoryBroker` and what became of it.

    ``attempts`` counts the deliveries made so far; ``retry_delays`` the delays, in seconds,
    the flow chose before each retry (as it would on a real broker, whatever ``time_scale``);
    ``outcome`` is None until the message is settled, then ``reason`` and ``error`` say why a
    message was dead-lettered or dropped. ``reply_to`` is the reply address of a request, and
    ``replies`` the payloads its handler replied with (one per successful attempt).
    """

    path: str
    payload: bytes
    message_id: str
    reply_to: str | None = None
    replies: List[bytes] = field(default_factory=list)
    attempts: int = 0
    retry_delays: List[float] = field(default_factory=list)
    outcome: Outcome | None = None
    reason: str | None = None
    error: BaseException | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def settled(self) -> Delivery:
        """Return this delivery once it is acknowledged, dead-lettered or dropped."""
        await self._done.wait()
        return self

    def _settle(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._done.set()


@dataclass(frozen=True)
class DeadLetterRecord:
    """A message :class:`MemoryBroker` dead-lettered: where, why (``reason``, ``error``), after
    how many ``attempts``."""

    target: str
    path: str
    payload: bytes
    reason: str
    error: BaseException
    attempts: int


class MemoryMessage(BrokerMessage):
    """One delivery of a :class:`Delivery` to the flow."""

    __slots__ = ("broker", "delivery")

    def __init__(self, delivery: Delivery, attempt: int, broker: MemoryBroker) -> None:
        super().__init__(delivery.path, delivery.payload, attempt=attempt, message_id=delivery.message_id)
        self.delivery = delivery
        self.broker = broker
        delivery.attempts = max(delivery.attempts, attempt)

    def scope(self) -> Scope:
        return {"message": self.delivery, "attempt": self.attempt}

    async def ack(self) -> None:
        self.broker._check_connected()
        self.delivery._settle(Outcome.ACKED)

    async def retry(self, delay: float, error: BaseException) -> None:
        self.broker._check_connected()
        self.delivery.retry_delays.append(delay)
        self.broker._put_later(delay, self.delivery, self.attempt + 1)

    async def release(self, delay: float = 0.0) -> None:
        self.broker._put_later(delay, self.delivery, self.attempt)

    async def dead_letter(self, target: str, reason: str, error: BaseException) -> None:
        broker = self.broker
        broker._check_connected()
        if broker.dead_letter_error is not None:
            raise broker.dead_letter_error
        broker.dead_letters.append(DeadLetterRecord(target, self.path, self.payload, reason, error, self.attempt))
        self.delivery.reason, self.delivery.error = reason, error

    def reply_address(self) -> str | None:
        return self.delivery.reply_to

    async def reply(self, payload: bytes) -> None:
        self.broker._check_connected()
        self.delivery.replies.append(payload)
        self.broker._replied(self.delivery, payload)

    async def drop(self) -> None:
        self.broker._check_connected()
        if self.delivery.reason is None:
            self.delivery._settle(Outcome.DROPPED)
        else:
            self.delivery._settle(Outcome.DEAD_LETTERED)


class MemoryBroker(BrokerSource):
    """A broker source with no server: messages published with :meth:`publish` are delivered
    to the hosting listener through the one broker delivery flow, with the settings every
    broker takes (``max_in_flight``, ``max_retries``, ``retry_backoff``, ``max_retry_delay``,
    ``dead_letter``, ``codec``...).

    - ``time_scale`` multiplies the waits before a retry comes again (0.0 by default: at once);
      :attr:`Delivery.retry_delays` keeps the delays the flow chose.
    - ``redelivers=True``: a retry goes back to the broker, which delivers it again (as NATS
      and RabbitMQ do); ``False``: the flow runs the event again in process, holding the
      message (as Redis Streams and MQTT do).
    - Dead letters are kept in :attr:`dead_letters` (``dead_letter=True`` names the target
      ``"dead-letters"``); set :attr:`dead_letter_error` to an exception to make storing them
      fail.
    - :meth:`break_connection` makes the connection drop, to see the flow reconnect.

    ``async with broker:`` runs the hosting listener (``main()``, without installing signal
    handlers) until the block ends, once the broker is ready.
    """

    kind = "memory"
    broker = "memory broker"
    url_schemes = ("memory",)
    url_form = "memory://<name>"
    receive_timeout = 0.05
    """Seconds one receive waits for a message: at shutdown, the receive under way ends first."""

    def __init__(
        self,
        *,
        name: str = "memory",
        codec: Codec | None = None,
        max_in_flight: int = 32,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 30.0,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        max_reconnect_delay: float = 10.0,
        time_scale: float = 0.0,
        redelivers: bool = True,
    ) -> None:
        super().__init__(
            f"memory://{name}",
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
        if time_scale < 0:
            raise ValueError(f"time_scale must be 0 or more, not {time_scale!r}")
        self.time_scale = time_scale
        self.redelivers_retries = redelivers
        self.deliveries: List[Delivery] = []
        """Every message published, in order."""
        self.dead_letters: List[DeadLetterRecord] = []
        """Every dead letter stored, in order."""
        self.dead_letter_error: BaseException | None = None
        self._queue: asyncio.Queue[Tuple[Delivery, int]] | None = None
        self._ids = itertools.count(1)
        self._connected_now = False
        self._refuse = 0
        self._main: asyncio.Task[None] | None = None
        self._reply_waiters: Dict[str, asyncio.Future[bytes]] = {}

    # ------------------------------------------------------------------ for tests

    async def publish(
        self, path: str, data: Any = None, *, payload: bytes | None = None, reply_to: str | None = None
    ) -> Delivery:
        """Queue a message for event ``path`` carrying ``data`` encoded by the codec (or the
        raw ``payload`` bytes as they are) and return its :class:`Delivery`; with ``reply_to``
        it is a request, whose handler replies (see :attr:`Delivery.replies`).

        What handlers publish (``publish_to``) comes here too: it is recorded in
        :attr:`deliveries` and delivered to the app like any message.
        """
        body = payload if payload is not None else data_to_payload(data, self.codec)
        delivery = Delivery(path, body, str(next(self._ids)), reply_to)
        self.deliveries.append(delivery)
        self._queue_now().put_nowait((delivery, 1))
        return delivery

    async def request(self, path: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Publish a request for event ``path`` and return its handler's reply, decoded by
        the codec. Raises :class:`~tiny_listener.NoReply` if no reply comes within
        ``timeout`` seconds (a request whose handler fails gets none)."""
        address = f"reply.{next(self._ids)}"
        waiter = self._reply_waiters[address] = asyncio.get_running_loop().create_future()
        try:
            await self.publish(path, data, reply_to=address)
            try:
                payload = await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                raise NoReply(path, timeout=timeout) from None
        finally:
            del self._reply_waiters[address]
        return self.codec.decode(payload)

    async def open_publisher(self) -> None:
        """Connect for :meth:`publish` only (nothing to do but be connected)."""
        await self.connect()

    async def settled(self) -> List[Delivery]:
        """Return every delivery once each is settled (published meanwhile included)."""
        while True:
            pending = [delivery for delivery in self.deliveries if delivery.outcome is None]
            if not pending:
                return list(self.deliveries)
            await pending[0].settled()

    def break_connection(self, refuse: int = 0) -> None:
        """Drop the connection (the next receive and settling calls fail with
        ``ConnectionResetError``), then refuse the next ``refuse`` connection attempts."""
        self._connected_now = False
        self._refuse = refuse

    # ------------------------------------------------------------------ the broker's part of the flow

    def intake(self) -> str:
        return "published messages"

    def default_dead_letter_target(self) -> str:
        return "dead-letters"

    async def connect(self) -> None:
        if self._refuse:
            self._refuse -= 1
            raise ConnectionRefusedError(f"{self.url} refuses connections (break_connection)")
        self._connected_now = True

    async def receive(self, max_messages: int) -> Sequence[MemoryMessage]:
        queue = self._queue_now()
        self._check_connected()
        try:
            first = await asyncio.wait_for(queue.get(), self.receive_timeout)
        except asyncio.TimeoutError:
            self._check_connected()
            return []
        items = [first]
        while len(items) < max_messages and not queue.empty():
            items.append(queue.get_nowait())
        return [MemoryMessage(delivery, attempt, self) for delivery, attempt in items]

    async def disconnect(self) -> None:
        self._connected_now = False

    async def wait_before_retry(self, message: BrokerMessage, delay: float) -> bool:
        if isinstance(message, MemoryMessage):
            message.delivery.retry_delays.append(delay)
            message.delivery.attempts += 1
        await asyncio.sleep(delay * self.time_scale)
        return True

    # ------------------------------------------------------------------ running the app

    async def __aenter__(self) -> MemoryBroker:
        """Run the hosting listener and return once this broker is ready; raise what the
        listener's ``main()`` raised if it ended first."""
        app = self.listener
        app.install_signal_handlers = _keep_signal_handlers  # type: ignore[method-assign]
        self._main = main = asyncio.get_running_loop().create_task(app.main(), name=f"{self.name} app")
        ready = asyncio.ensure_future(self.wait_ready())
        await asyncio.wait([main, ready], return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            self._main = None
            del app.install_signal_handlers
            main.result()
            raise RuntimeError(f"{app!r}.main() returned before {self.name} was ready")
        return self

    async def __aexit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the listener as a signal does and wait for its shutdown."""
        main, self._main = self._main, None
        if main is None:
            return
        try:
            self.listener.stop()
            await main
        finally:
            del self.listener.install_signal_handlers

    # ------------------------------------------------------------------ internals

    def _queue_now(self) -> asyncio.Queue[Tuple[Delivery, int]]:
        # Made on first use, inside the running loop (Python 3.9 binds a Queue to a loop).
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def _check_connected(self) -> None:
        if not self._connected_now:
            raise ConnectionResetError(f"{self.url}: the connection was broken (break_connection)")

    def _replied(self, delivery: Delivery, payload: bytes) -> None:
        waiter = self._reply_waiters.get(delivery.reply_to or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(payload)

    def _put_later(self, delay: float, delivery: Delivery, attempt: int) -> None:
        queue = self._queue_now()
        asyncio.get_running_loop().call_later(delay * self.time_scale, queue.put_nowait, (delivery, attempt))


def _keep_signal_handlers() -> None:
    """Stands in for ``Listener.install_signal_handlers``: tests keep their own handlers."""
