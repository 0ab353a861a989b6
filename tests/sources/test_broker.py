"""The one broker delivery flow (tiny_listener.sources.broker), driven through MemoryBroker:
its decisions (ack, retry with backoff, dead letter with reason), the in-flight bound, the
connection states and reconnects, the shutdown drain and the log lines, without a server."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import gc
import logging
from typing import Annotated, Any, List, Set
from unittest.mock import ANY

import pytest

from tests.log_watch import watching_log
from tiny_listener import Context, Data, Event, Listener, Param, ValidationError, depend
from tiny_listener.codecs import DecodeError
from tiny_listener.errors import EventNotFound
from tiny_listener.lifecycle import EventState
from tiny_listener.sources import BrokerMessage, SourceState
from tiny_listener.testing import EventRecorder, MemoryBroker, Outcome
from tiny_listener.testing.memory import MemoryMessage


@dataclasses.dataclass
class Order:
    sku: str
    qty: int


def hosted(**options: Any) -> MemoryBroker:
    app: Listener[Any] = Listener()
    return app.add_source(MemoryBroker(**options))


@pytest.fixture(params=[True, False], ids=["broker-retries", "in-process-retries"])
def redelivers(request: pytest.FixtureRequest) -> bool:
    """Every decision holds whether the broker redelivers a retry (NATS, RabbitMQ) or the flow
    runs the event again in process (Redis Streams, MQTT)."""
    return bool(request.param)


async def test_a_handled_message_is_acknowledged_once_with_its_data_and_attempt() -> None:
    broker = hosted()
    seen: List[Any] = []

    @broker.listener.on_event("orders.{id:int}")
    async def order(id: Param, amount: Data, event: Event) -> None:
        seen.append((id, amount, event.ctx.scope["attempt"], event.ctx.scope["message"].message_id))

    async with broker:
        delivery = await (await broker.publish("orders.7", {"amount": 12})).settled()
    assert seen == [(7, 12, 1, "1")]
    assert (delivery.outcome, delivery.attempts, delivery.retry_delays) == (Outcome.ACKED, 1, [])


async def test_a_request_gets_its_handlers_result_as_reply_and_a_plain_message_none() -> None:
    broker = hosted()

    @broker.listener.on_event("quotes.{sku}")
    async def quote(sku: Param) -> Any:
        return {"sku": sku, "price": 3}

    async with broker:
        assert await broker.request("quotes.tea") == {"sku": "tea", "price": 3}
        plain = await (await broker.publish("quotes.milk")).settled()
    assert (plain.outcome, plain.replies) == (Outcome.ACKED, [])


def test_the_flow_asks_for_a_reply_address_only_where_a_message_class_has_one() -> None:
    class Plain(BrokerMessage):
        pass

    class Request(Plain):
        def reply_address(self) -> str | None:
            return "inbox"

    class Subclassed(Request):
        pass

    assert (Plain.replies, Request.replies, Subclassed.replies, MemoryMessage.replies) == (False, True, True, True)


async def test_a_failing_handler_is_retried_with_growing_delays_until_it_succeeds(redelivers: bool) -> None:
    broker = hosted(max_retries=3, redelivers=redelivers)
    attempts: List[int] = []

    @broker.listener.on_event("flaky")
    async def flaky(event: Event) -> None:
        attempts.append(event.ctx.scope["attempt"])
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    async with broker:
        delivery = await (await broker.publish("flaky")).settled()
    assert attempts == [1, 2, 3]
    assert (delivery.outcome, delivery.attempts, delivery.retry_delays) == (Outcome.ACKED, 3, [0.5, 1.0])
    assert broker.dead_letters == []


async def test_a_handler_failing_every_attempt_is_dead_lettered_with_its_error(redelivers: bool) -> None:
    broker = hosted(max_retries=3, retry_backoff=0.5, max_retry_delay=0.75, redelivers=redelivers)
    attempts: List[int] = []

    @broker.listener.on_event("always.{n}")
    async def always(event: Event) -> None:
        attempts.append(event.ctx.scope["attempt"])
        raise ValueError("broken")

    async with broker:
        delivery = await (await broker.publish("always.1", {"k": "v"})).settled()
    assert attempts == [1, 2, 3, 4]
    assert delivery.retry_delays == [0.5, 0.75, 0.75]  # capped by max_retry_delay
    assert (delivery.outcome, delivery.reason) == (Outcome.DEAD_LETTERED, "handler-failed")
    [letter] = broker.dead_letters
    assert (letter.target, letter.path, letter.reason) == ("dead-letters", "always.1", "handler-failed")
    assert letter.attempts == 4
    assert isinstance(letter.error, ValueError) and letter.payload == b'{"k":"v"}'


async def test_no_retries_dead_letters_at_the_first_failure() -> None:
    broker = hosted(max_retries=0, dead_letter="failed-orders")

    @broker.listener.on_event("once")
    async def once() -> None:
        raise ValueError("no")

    async with broker:
        delivery = await (await broker.publish("once")).settled()
    assert (delivery.outcome, delivery.attempts, delivery.retry_delays) == (Outcome.DEAD_LETTERED, 1, [])
    assert [letter.target for letter in broker.dead_letters] == ["failed-orders"]


async def test_messages_that_cannot_become_events_are_dead_lettered_at_once() -> None:
    broker = hosted()
    called: List[str] = []

    @broker.listener.on_event("known")
    async def known() -> None:
        called.append("known")

    async with broker:
        nobody = await broker.publish("nobody.handles.this", {})
        garbled = await broker.publish("known", payload=b"{not json")
        await broker.settled()
    assert called == []
    assert [(d.outcome, d.reason, d.attempts) for d in (nobody, garbled)] == [
        (Outcome.DEAD_LETTERED, "no-route", 1),
        (Outcome.DEAD_LETTERED, "undecodable", 1),
    ]
    assert isinstance(nobody.error, EventNotFound) and isinstance(garbled.error, DecodeError)


async def test_an_error_taken_by_an_on_error_handler_is_a_success() -> None:
    broker = hosted()
    app = broker.listener

    @app.on_event("soft")
    async def soft() -> None:
        raise KeyError("handled")

    @app.on_error(KeyError)
    async def took_it() -> None:
        pass

    async with broker:
        delivery = await (await broker.publish("soft")).settled()
    assert (delivery.outcome, delivery.attempts) == (Outcome.ACKED, 1)


async def test_an_on_error_handler_gets_the_event_of_a_handler_of_data_and_parameters_only() -> None:
    # Such a handler runs without an Event object (Listener._event_here); one is made when it
    # fails, for the on_error handlers, as it would have been.
    broker = hosted(max_retries=0)
    app = broker.listener
    seen: List[Any] = []

    @app.on_event("orders.{id:int}")
    async def order(id: Param, amount: Data, order: Order) -> None:
        raise ValueError(f"order {id} of {amount}: {order.qty} too many")

    @app.on_error(ValueError)
    async def note(event: Event, id: Param) -> None:
        message = event.ctx.scope["message"]
        seen.append((event.path, event.data, event.params, id, repr(event.error), message.message_id, event.state))

    async with broker:
        delivery = await (await broker.publish("orders.7", {"amount": 12, "sku": "a", "qty": 3})).settled()
    assert seen == [
        (
            "orders.7",
            {"amount": 12, "sku": "a", "qty": 3},
            {"id": 7},
            7,
            "ValueError('order 7 of 12: 3 too many')",
            "1",
            EventState.RUNNING,
        )
    ]
    assert (delivery.outcome, delivery.attempts) == (Outcome.ACKED, 1)  # on_error took the error
    assert app.ctxs == {}


async def test_data_that_does_not_validate_is_dead_lettered_naming_the_fields() -> None:
    broker = hosted(max_retries=3)
    app = broker.listener
    errors: List[Any] = []

    @app.on_event("orders")
    async def order(order: Order) -> None:
        raise AssertionError("not reached")

    @app.on_error(ValidationError)
    async def note(event: Event) -> None:
        assert isinstance(event.error, ValidationError)
        errors.append((event.data, event.error.errors()))
        raise event.error

    async with broker:
        delivery = await (await broker.publish("orders", {"sku": "a", "qty": "many"})).settled()
    assert errors == [({"sku": "a", "qty": "many"}, [{"loc": ("qty",), "msg": ANY, "type": ANY}])]
    assert (delivery.outcome, delivery.attempts) == (Outcome.DEAD_LETTERED, 1)  # not retried: the data is wrong


async def orders_run(observed: bool) -> Any:
    """What a handler of data and parameters received and how its bad messages failed, with
    an event observer set (every message's event made) or not (none made)."""
    broker = hosted(max_retries=0)
    app = broker.listener
    recorder = EventRecorder()
    if observed:
        app.add_event_observer(recorder)

    @app.on_event("orders.{id:int}")
    async def order(
        id: Param, amount: Data, order: Order, note: Data = "none", *, qty: Annotated[int, Data] = 0
    ) -> Any:
        return [id, amount, order.sku, note, qty]

    async with broker:
        replies = [
            await broker.request("orders.1", {"amount": 5, "sku": "a", "qty": 2, "note": "gift"}),
            await broker.request("orders.2", {"amount": 6, "sku": "b", "qty": 3}),
        ]
        for data in ({"sku": "c", "qty": 1}, {"amount": 7, "sku": "d", "qty": "x"}, [1, 2]):
            await broker.publish("orders.3", data)
        deliveries = await broker.settled()
    assert app.ctxs == {}
    failed = [(d.outcome, d.reason, repr(d.error)) for d in deliveries[2:]]
    return replies, failed, len(recorder.events)


async def test_a_handler_of_data_and_parameters_gets_the_same_values_and_errors_with_or_without_an_event() -> None:
    # Unobserved, such a handler runs without an Event object: what it receives, and the
    # failures of missing or invalid data, must not tell the two apart.
    unobserved = await orders_run(observed=False)
    observed = await orders_run(observed=True)
    assert unobserved[:2] == observed[:2]
    assert (unobserved[2], observed[2]) == (0, 5)  # events the observer saw
    replies, failed, _ = unobserved
    assert replies == [[1, 5, "a", "gift", 2], [2, 6, "b", "none", 3]]
    missing = """EventDataError("event data 'amount' is missing, allowed: ['qty', 'sku']")"""
    assert failed == [
        (Outcome.DEAD_LETTERED, "handler-failed", missing),
        (Outcome.DEAD_LETTERED, "invalid", ANY),
        (Outcome.DEAD_LETTERED, "invalid", ANY),
    ]
    assert "qty" in failed[1][2] and "sku" in failed[2][2]


class BodyContext(Context):
    """A context whose data comes apart from the message (as an HTTP request's body does)."""

    async def read_event_data(self) -> Any:
        return {"sku": "from the context", "qty": 1}


async def test_a_typed_handler_of_a_message_without_data_reads_it_from_the_context() -> None:
    # Reading it needs the event's context: such a message does not run without its event.
    broker = hosted()
    app = broker.listener
    app.set_context_cls(BodyContext)
    orders: List[Order] = []

    @app.on_event("orders")
    async def order(order: Order) -> None:
        orders.append(order)

    async with broker:
        await broker.publish("orders", {})
        await broker.publish("orders", {"sku": "given", "qty": 2})
        deliveries = await broker.settled()
    assert orders == [Order("from the context", 1), Order("given", 2)]
    assert [d.outcome for d in deliveries] == [Outcome.ACKED, Outcome.ACKED]


async def test_before_and_after_event_hooks_run_around_the_handler_of_a_message() -> None:
    broker = hosted(max_retries=0)
    app = broker.listener
    calls: List[Any] = []
    events: List[Event] = []

    @app.before_event
    async def before(event: Event, what: Param) -> None:
        calls.append(("before", what))
        if what == "refused":
            raise PermissionError("refused by a hook")

    @app.after_event
    async def after(event: Event) -> None:
        calls.append(("after", event.result))

    @app.on_event("orders.{what}")
    async def handler(what: Param, event: Event) -> str:
        calls.append(("handler", what))
        events.append(event)
        return what.upper()

    async with broker:
        fine = await (await broker.publish("orders.fine")).settled()
        refused = await (await broker.publish("orders.refused")).settled()
        assert not app.ctxs  # nothing asked for a context
    assert calls == [("before", "fine"), ("handler", "fine"), ("after", "FINE"), ("before", "refused")]
    assert (fine.outcome, refused.outcome) == (Outcome.ACKED, Outcome.DEAD_LETTERED)
    assert isinstance(refused.error, PermissionError)
    assert events[0].is_done and events[0].result == "FINE"


async def test_without_a_dead_letter_target_a_message_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    broker = hosted(max_retries=0, dead_letter=False)

    @broker.listener.on_event("doomed")
    async def doomed() -> None:
        raise ValueError("lost cause")

    async with broker:
        delivery = await (await broker.publish("doomed")).settled()
    assert delivery.outcome is Outcome.DROPPED and broker.dead_letters == []
    [record] = [r for r in caplog.records if r.name == "tiny_listener.memory"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "dropped (handler-failed): no dead-letter target is configured" in record.getMessage()


async def test_a_dead_letter_that_cannot_be_stored_is_handed_back_and_comes_again() -> None:
    broker = hosted(max_retries=0)
    broker.dead_letter_error = ConnectionResetError("dead-letter store is down")
    runs: List[int] = []

    @broker.listener.on_event("doomed")
    async def doomed(event: Event) -> None:
        runs.append(event.ctx.scope["attempt"])
        raise ValueError("no")

    with watching_log("tiny_listener.memory", "could not dead-letter it") as not_stored:
        async with broker:
            delivery = await broker.publish("doomed")
            await asyncio.wait_for(not_stored.wait(), 10)
            broker.dead_letter_error = None
            await delivery.settled()
    assert delivery.outcome is Outcome.DEAD_LETTERED
    assert len(broker.dead_letters) == 1 and runs[:2] == [1, 1]  # handed back as the same attempt


async def test_no_more_than_max_in_flight_messages_are_handled_at_once(redelivers: bool) -> None:
    broker = hosted(max_in_flight=3, redelivers=redelivers)
    running_now = peak = 0
    three_in = asyncio.Event()
    release = asyncio.Event()

    @broker.listener.on_event("job.{n:int}")
    async def job(n: Param) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        if running_now == 3:
            three_in.set()
        await release.wait()
        running_now -= 1

    async with broker:
        for n in range(10):
            await broker.publish(f"job.{n}")
        await asyncio.wait_for(three_in.wait(), 10)
        assert broker.in_flight == 3
        # "No fourth one starts" has no event to await: give it the time of a few receives.
        await asyncio.sleep(3 * broker.receive_timeout)
        release.set()
        deliveries = await broker.settled()
    assert peak == 3 and {d.outcome for d in deliveries} == {Outcome.ACKED}


async def test_a_retry_is_one_warning_and_the_last_failure_one_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = hosted(max_retries=2, retry_backoff=0.25)

    @broker.listener.on_event("orders.{id}")
    async def order() -> None:
        raise ValueError("broken")

    async with broker:
        await (await broker.publish("orders.7")).settled()
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Nothing from the core (tiny_listener): the flow reports the handler's failures itself.
    assert [(r.name, r.levelname, r.exc_info is not None) for r in records] == [
        ("tiny_listener.memory", "WARNING", False),
        ("tiny_listener.memory", "WARNING", False),
        ("tiny_listener.memory", "ERROR", True),
    ]
    assert [r.getMessage() for r in records] == [
        "memory broker message 1: event 'orders.7' failed on attempt 1 of 3 (ValueError('broken')); retrying in 0.25s",
        "memory broker message 1: event 'orders.7' failed on attempt 2 of 3 (ValueError('broken')); retrying in 0.50s",
        "memory broker message 1: event 'orders.7' failed in handler order on attempt 3 of 3, the last "
        "(ValueError('broken')); dead-lettered to 'dead-letters' (handler-failed)",
    ]
    fields = [(r.broker, r.event_path, r.message_id, r.attempt) for r in records]  # type: ignore[attr-defined]
    assert fields == [("memory broker", "orders.7", "1", n) for n in (1, 2, 3)]
    assert records[-1].reason == "handler-failed"  # type: ignore[attr-defined]


async def test_a_lost_connection_is_reported_retried_and_recovered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tiny_listener.memory")
    broker = hosted()
    app = broker.listener
    handled: List[int] = []

    @app.on_event("job.{n:int}")
    async def job(n: Param) -> None:
        handled.append(n)

    with watching_log("tiny_listener.memory", "reconnected to") as reconnected:
        async with broker:
            await (await broker.publish("job.1")).settled()
            assert app.ready and app.health()["status"] == "ready"
            broker.break_connection(refuse=2)
            await broker.wait_state(SourceState.RECONNECTING)
            assert not app.ready and app.health()["sources"]["memory"]["state"] == "reconnecting"
            await asyncio.wait_for(reconnected.wait(), 10)
            assert broker.connected
            await (await broker.publish("job.2")).settled()
    assert handled == [1, 2]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines[0].startswith(
        "memory broker at memory://memory is unreachable: consuming stopped (ConnectionResetError("
    )
    assert [line.split(" (")[0] for line in lines[1:3]] == [
        "memory broker at memory://memory is unreachable: cannot connect"
    ] * 2
    assert lines[3] == "reconnected to memory broker at memory://memory: consuming published messages again"


async def test_shutdown_counts_each_running_event_once(caplog: pytest.LogCaptureFixture) -> None:
    broker = hosted()
    app = broker.listener
    app.shutdown_timeout = 0.2
    running: List[int] = []
    three = asyncio.Event()

    @app.on_event("stuck")
    async def stuck(n: Data) -> None:
        running.append(n)
        if len(running) == 3:
            three.set()
        await asyncio.Event().wait()  # cancelled at the shutdown deadline

    caplog.set_level(logging.INFO, logger="tiny_listener")
    async with broker:
        for n in range(3):
            await broker.publish("stuck", {"n": n})
        await asyncio.wait_for(three.wait(), 10)
    lines = [r.getMessage() for r in caplog.records if r.name == "tiny_listener"]
    # Each runs in a worker of the flow, which is also a task shutdown waits for: one each.
    assert "waiting up to 0.2s for 3 in-flight event(s)" in lines
    assert "cancelling 3 event(s) still running at shutdown" in lines


def run_a_stubborn_handler(takes_event: bool) -> None:
    """Run a listener whose handler ignores its cancellation until shutdown abandons it."""
    broker = hosted()
    app = broker.listener
    app.shutdown_timeout = app.cancel_timeout = 0.05

    async def stubborn(n: Data) -> None:
        app.stop()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    async def stubborn_event(n: Data, event: Event) -> None:
        await stubborn(n)

    app.add_on_event_hook(stubborn_event if takes_event else stubborn, "orders.{id}")

    @app.startup
    async def publish() -> None:
        await broker.publish("orders.7", {"n": 1})

    app.run()  # unlike asyncio.run(), it does not wait for what ignored its cancellation


@pytest.mark.parametrize("takes_event", [False, True], ids=["data-only", "with-event"])
def test_a_handler_that_ignores_its_cancellation_is_named_at_shutdown(
    takes_event: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # A handler of data only runs without an Event (Listener._event_here): the line still
    # names its event and handler, read from the worker running it, not the worker's name.
    caplog.set_level(logging.WARNING, logger="tiny_listener")
    run_a_stubborn_handler(takes_event)
    gc.collect()  # closes the abandoned coroutine: no traceback, no asyncio complaint
    handler = "stubborn_event" if takes_event else "stubborn"
    lines = [r.getMessage() for r in caplog.records if r.name == "tiny_listener"]
    assert f"1 task(s) ignored their cancellation and are left behind: event 'orders.7' in handler {handler}" in lines
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_shutdown_lets_in_flight_messages_finish_and_hands_back_those_it_gives_up() -> None:
    broker = hosted()
    app = broker.listener
    app.shutdown_timeout = 0.2
    started = asyncio.Event()
    finishing = asyncio.Event()

    @app.on_event("slow")
    async def slow() -> None:
        started.set()
        await finishing.wait()

    @app.on_event("stuck")
    async def stuck() -> None:
        await asyncio.Event().wait()  # cancelled at the shutdown deadline

    @app.shutdown
    async def let_slow_finish() -> None:
        finishing.set()

    async with broker:
        slow_one = await broker.publish("slow")
        stuck_one = await broker.publish("stuck")
        await asyncio.wait_for(started.wait(), 10)
    assert slow_one.outcome is Outcome.ACKED
    assert stuck_one.outcome is None and broker.state is SourceState.STOPPED

    # Handed back as it was: the next run of the app gets it again, as the same attempt.
    app.remove_on_event_hook("stuck")
    seen: List[int] = []

    @app.on_event("stuck")
    async def stuck_again(event: Event) -> None:
        seen.append(event.ctx.scope["attempt"])

    async with broker:
        await stuck_one.settled()
    assert seen == [1] and stuck_one.outcome is Outcome.ACKED


async def test_client_library_logs_are_demoted_to_debug_unless_asked_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    class Chatty(MemoryBroker):
        client_loggers = ("tests.chatty_client",)

    for quiet in (True, False):
        app: Listener[Any] = Listener()
        broker = app.add_source(Chatty(name=f"chatty-{quiet}"))
        broker.quiet_client_logs = quiet
        async with broker:
            logging.getLogger("tests.chatty_client").error("connection reset (quiet=%s)", quiet)
        if quiet:
            # Installed once for the process: the same logger stays demoted.
            logging.getLogger("tests.chatty_client").filters.clear()
    shown = [r.getMessage() for r in caplog.records if r.name == "tests.chatty_client" and r.levelno >= logging.INFO]
    assert shown == ["connection reset (quiet=False)"]


def test_a_demoted_client_record_reaches_no_handler_unless_its_logger_logs_debug() -> None:
    from tiny_listener.sources._broker_log import quiet_client_loggers

    logger = logging.getLogger("tests.demoted_client")
    seen: List[logging.LogRecord] = []
    handler = logging.Handler()  # no level of its own, as a plain StreamHandler
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    quiet_client_loggers(("tests.demoted_client",))
    try:
        logger.setLevel(logging.INFO)
        logger.warning("heartbeat failed")  # let through at INFO, dropped once demoted
        logger.setLevel(logging.DEBUG)
        logger.warning("heartbeat failed again")
    finally:
        logger.removeHandler(handler)
        logger.filters.clear()
        logger.setLevel(logging.NOTSET)
    assert [(r.getMessage(), r.levelname) for r in seen] == [("heartbeat failed again", "DEBUG")]


async def test_data_that_does_not_validate_is_dead_lettered_at_once_as_invalid(
    redelivers: bool, caplog: pytest.LogCaptureFixture
) -> None:
    broker = hosted(max_retries=3, redelivers=redelivers)
    handled: List[Order] = []

    @broker.listener.on_event("orders")
    async def order(order: Order) -> None:
        handled.append(order)

    async with broker:
        with caplog.at_level(logging.INFO, logger="tiny_listener"):
            bad = await (await broker.publish("orders", {"sku": "a", "qty": "many"})).settled()
        good = await (await broker.publish("orders", {"sku": "b", "qty": 2})).settled()
    assert (bad.outcome, bad.reason, bad.attempts, bad.retry_delays) == (Outcome.DEAD_LETTERED, "invalid", 1, [])
    assert [error["loc"] for error in bad.error.errors()] == [("qty",)]  # type: ignore[union-attr]
    assert broker.dead_letters[0].reason == "invalid"
    assert good.outcome is Outcome.ACKED and handled == [Order("b", 2)]
    # One line, no traceback: the data is wrong, not the handler.
    [line] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "dead-lettered" in line.getMessage() and line.exc_info is None


class HandsOver(MemoryBroker):
    """A broker that keeps its messages in order: the next queued message is handed to the
    task that settled the last one (``next_in_turn``), as Kafka hands over a partition's next
    record."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.handed_over: List[str] = []
        self.tasks: Set[asyncio.Task[Any] | None] = set()

    def next_in_turn(self, settled: BrokerMessage) -> BrokerMessage | None:
        self.tasks.add(asyncio.current_task())
        queue = self._queue_now()
        if queue.empty():
            return None
        delivery, attempt = queue.get_nowait()
        self.handed_over.append(delivery.path)
        return MemoryMessage(delivery, attempt, self)


async def test_next_in_turn_delivers_the_next_message_in_the_same_task() -> None:
    app: Listener[Any] = Listener()
    broker = app.add_source(HandsOver(max_in_flight=1))
    seen: List[str] = []

    @app.on_event("{name}")
    async def handle(name: Param) -> None:
        seen.append(name)

    for name in ("a", "b", "c"):
        await broker.publish(name)
    async with broker:
        deliveries = await broker.settled()
    assert seen == ["a", "b", "c"]
    assert broker.handed_over == ["b", "c"]  # received once, then handed over twice
    assert len(broker.tasks) == 1
    assert [delivery.outcome for delivery in deliveries] == [Outcome.ACKED] * 3


async def test_next_in_turn_is_not_asked_once_intake_stopped() -> None:
    app: Listener[Any] = Listener()
    broker = app.add_source(HandsOver(max_in_flight=1))

    @app.on_event("{name}")
    async def handle(name: Param) -> None:
        app.stop()  # shutdown starts while the first message runs...
        await broker.wait_state(SourceState.DRAINING)  # ...and has stopped intake when it ends

    first, _ = [await broker.publish(name) for name in ("a", "b")]
    async with broker:
        await first.settled()
    assert broker.handed_over == []
    assert [delivery.outcome for delivery in broker.deliveries] == [Outcome.ACKED, None]


class BuggyAck(MemoryMessage):
    """A message whose adapter fails to acknowledge it with an error that is no connection
    error: a bug in a broker's adapter."""

    async def ack(self) -> None:
        if self.path == "buggy":
            raise RuntimeError("bug in the adapter")
        await super().ack()


class BuggyInTurn(HandsOver):
    """Hands its messages over in turn (as Kafka does); their acknowledgements may fail."""

    async def receive(self, max_messages: int) -> List[MemoryMessage]:
        return [BuggyAck(message.delivery, message.attempt, self) for message in await super().receive(max_messages)]

    def next_in_turn(self, settled: BrokerMessage) -> BrokerMessage | None:
        following = super().next_in_turn(settled)
        assert following is None or isinstance(following, MemoryMessage)
        return following if following is None else BuggyAck(following.delivery, following.attempt, self)


class BuggyQueued(MemoryBroker):
    """Takes its messages from the queue (the plain path); their acknowledgements may fail."""

    async def receive(self, max_messages: int) -> List[MemoryMessage]:
        return [BuggyAck(message.delivery, message.attempt, self) for message in await super().receive(max_messages)]


@pytest.mark.parametrize("in_turn", [False, True], ids=["queued", "in-turn"])
async def test_a_bug_in_a_brokers_adapter_is_logged_and_the_worker_goes_on(
    in_turn: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app: Listener[Any] = Listener()
    broker = app.add_source(BuggyInTurn(max_in_flight=1) if in_turn else BuggyQueued(max_in_flight=1))
    seen: List[str] = []

    @app.on_event("{name}")
    async def handle(name: Param) -> None:
        seen.append(name)

    deliveries = [await broker.publish(name) for name in ("a", "buggy", "b", "c")]
    async with broker:
        await asyncio.wait_for(deliveries[-1].settled(), 10)  # the one slot was freed: what came after runs
    assert seen == ["a", "buggy", "b", "c"]
    assert [delivery.outcome for delivery in deliveries] == [Outcome.ACKED, None, Outcome.ACKED, Outcome.ACKED]
    [line] = [record for record in caplog.records if "delivery failed" in record.getMessage()]
    assert line.levelno == logging.ERROR and line.exc_info is not None


async def test_messages_whose_handlers_do_not_wait_are_delivered_without_a_task_each() -> None:
    broker = hosted(max_in_flight=50)
    handled: List[int] = []
    workers_seen: Set[asyncio.Task[Any]] = set()

    @broker.listener.on_event("job.{n:int}")
    async def job(n: Param) -> None:
        task = asyncio.current_task()
        assert task is not None
        workers_seen.add(task)
        handled.append(n)

    for n in range(40):
        await broker.publish(f"job.{n}")
    async with broker:
        await broker.settled()
    assert handled == list(range(40))
    # One worker delivers the received batch in one go; a second one was sent to the queue
    # in case the first one's handler waited, and found nothing left.
    assert len(workers_seen) == 1
    assert {task.get_name() for task in workers_seen} == {f"{broker.name} worker"}


async def test_ordered_messages_still_waiting_for_their_turn_at_the_deadline_are_handed_back() -> None:
    class OneKey(MemoryBroker):
        ordered = True

        def ordering_key(self, message: BrokerMessage) -> Any:
            return "account"

    app: Listener[Any] = Listener()
    broker = app.add_source(OneKey(max_in_flight=5))
    app.shutdown_timeout = 0.2
    started = asyncio.Event()

    @app.on_event("transfer.{n:int}")
    async def stuck(n: Param) -> None:
        started.set()
        await asyncio.Event().wait()  # cancelled at the shutdown deadline

    async with broker:
        messages = [await broker.publish(f"transfer.{n}") for n in range(3)]
        await asyncio.wait_for(started.wait(), 10)
    assert [message.outcome for message in messages] == [None, None, None]

    # All three were handed back (the first one by its event, the others while they waited
    # for their turn): the next run gets every one of them.
    app.remove_on_event_hook("stuck")
    seen: List[int] = []

    @app.on_event("transfer.{n:int}")
    async def transfer(n: Param) -> None:
        seen.append(n)

    async with broker:
        for message in messages:
            await asyncio.wait_for(message.settled(), 10)
    assert sorted(seen) == [0, 1, 2]  # in the order they were handed back, which shutdown decides


request_id: contextvars.ContextVar[int] = contextvars.ContextVar("request_id")


async def test_a_context_variable_a_handler_sets_is_not_seen_by_the_next_messages_handler() -> None:
    broker = hosted(max_in_flight=10)
    seen: List[Any] = []

    @broker.listener.on_event("job.{n:int}")
    async def job(n: Param) -> None:
        seen.append(request_id.get(None))
        if n % 2 == 0:
            request_id.set(n)  # as a handler binding a request id for its logs would

    for n in range(6):
        await broker.publish(f"job.{n}")
    async with broker:
        deliveries = await broker.settled()
    # As with a task per message: every handler starts with the variables unset.
    assert seen == [None] * 6
    assert [d.outcome for d in deliveries] == [Outcome.ACKED] * 6


async def test_a_handler_that_asks_for_no_context_makes_none_and_one_that_asks_gets_its_own() -> None:
    broker = hosted()
    app = broker.listener
    seen: List[Any] = []

    @app.on_event("job.{n:int}")
    async def job(n: Param, event: Event) -> None:
        seen.append(dict(app.ctxs))  # nothing asked for a context yet: none was made
        if n == 1:
            ctx = event.ctx  # made now, the anonymous context the event would have had
            assert ctx is event.ctx and app.ctxs == {ctx.cid: ctx}
            assert ctx.events[event.route] == [event] and ctx.scope["message"].message_id == "2"
            seen.append(ctx.scope["attempt"])
        else:
            seen.append(event)

    async with broker:
        await broker.publish("job.0")
        await broker.publish("job.1")
        deliveries = await broker.settled()
    assert [d.outcome for d in deliveries] == [Outcome.ACKED, Outcome.ACKED]
    assert seen[0] == {} and seen[2] == {} and seen[3] == 1
    assert app.ctxs == {}  # the one made was released with its event
    with pytest.raises(ReferenceError, match=r"'job\.0' was released"):
        _ = seen[1].ctx  # the event ended without a context: none can be made for it now


async def test_a_context_made_on_demand_serves_what_a_context_gives_handlers() -> None:
    broker = hosted()
    app = broker.listener
    seen: List[Any] = []

    async def account(ctx: Context) -> str:
        seen.append("resolved")
        return f"account-{ctx.scope['attempt']}"

    @app.on_event("pay.{n:int}")
    async def pay(n: Param, ctx: Context, first: str = depend(account), second: str = depend(account)) -> None:
        ctx.scope["paid"] = n
        seen.append((first, second, ctx.scope["message"].path, await ctx.trigger_event("receipt")))

    @app.on_event("receipt")
    async def receipt(ctx: Context) -> Any:
        return ctx.scope["paid"]  # the same context as the event that triggered it

    async with broker:
        await broker.publish("pay.5")
        (delivery,) = await broker.settled()
    assert delivery.outcome is Outcome.ACKED
    assert seen == ["resolved", ("account-1", "account-1", "pay.5", 5)]  # the dependency cached per context
    assert app.ctxs == {}


async def test_observers_and_error_handlers_see_the_context_of_a_broker_event() -> None:
    broker = hosted(max_retries=0)
    app = broker.listener
    recorder = EventRecorder()
    app.add_event_observer(recorder)
    taken: List[str] = []

    @app.on_event("job.{n:int}")
    async def job(n: Param) -> None:
        if n == 1:
            raise ValueError("no")

    @app.on_error(ValueError)
    async def note(event: Event) -> None:
        taken.append(event.ctx.cid)

    async with broker:
        await broker.publish("job.0")
        await broker.publish("job.1")
        deliveries = await broker.settled()
    assert [d.outcome for d in deliveries] == [Outcome.ACKED, Outcome.ACKED]  # on_error took the error
    cids = [record.cid for record in recorder.events]
    assert len(set(cids)) == 2 and taken == [cids[1]]
    assert app.ctxs == {}
