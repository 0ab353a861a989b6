from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from typing import Any

import pytest

from tiny_listener import (
    DuplicateListener,
    Event,
    EventAlreadyExists,
    EventFailed,
    EventNotFound,
    Listener,
    ListenerNotFound,
    Param,
    depend,
    get_current_running_listener,
)
from tiny_listener.failures import InterruptHookWarning
from tiny_listener.testing import TestClient


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        await self.wait_for_shutdown()


async def test_trigger_event_returns_the_handler_result_and_raises_not_found_synchronously() -> None:
    app = App()

    @app.on_event("GET:/user/{name}", method="GET")
    async def hello(name: Param) -> str:
        return f"Hello, {name}!"

    assert await app.trigger_event("GET:/user/bob") == "Hello, bob!"
    assert app.get_route("hello").opts == {"method": "GET"}
    with pytest.raises(EventNotFound):
        app.trigger_event("POST:/nothing")


def test_duplicate_handler_name_and_removal() -> None:
    app = App()

    @app.on_event("a")
    async def handler() -> None: ...

    with pytest.raises(EventAlreadyExists):
        app.add_on_event_hook(handler, "b")
    assert app.remove_on_event_hook(handler) is True
    assert app.remove_on_event_hook("handler") is False


async def test_hooks_run_around_the_handler() -> None:
    app = App()
    calls: list[str] = []

    @app.before_event
    async def before(event: Event, name: Param) -> None:
        calls.append(f"before {event.path} {name}")

    @app.after_event
    async def after(event: Event) -> None:
        calls.append(f"after {event.result}")

    @app.on_event("x/{name}")
    async def handler(name: Param) -> str:
        calls.append("handler")
        return name

    async with TestClient(app) as client:
        assert await client.trigger("x/bob") == "bob"
    assert calls == ["before x/bob bob", "handler", "after bob"]
    assert [(r.path, r.params, r.result) for r in client.events] == [("x/bob", {"name": "bob"}, "bob")]


async def test_on_error_handles_matching_errors_only(caplog: pytest.LogCaptureFixture) -> None:
    app = App()
    handled: list[BaseException | None] = []

    @app.on_error(KeyError)
    async def on_key_error(event: Event) -> None:
        handled.append(event.error)

    @app.on_event("key")
    async def key() -> None:
        raise KeyError("k")

    @app.on_event("value")
    async def value() -> None:
        raise ValueError("v")

    assert await app.trigger_event("key") is None
    assert isinstance(handled[0], KeyError)
    assert not caplog.records
    with pytest.raises(ValueError):
        await app.trigger_event("value")


async def test_unhandled_error_is_logged_once_with_path_handler_and_cid(caplog: pytest.LogCaptureFixture) -> None:
    app = App()

    @app.on_event("pay/{order}")
    async def pay(order: Param) -> None:
        raise RuntimeError("card declined")

    task = app.trigger_event("pay/42", cid="session-7")
    with pytest.raises(RuntimeError):
        await task
    records = [r for r in caplog.records if r.name == "tiny_listener"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "'pay/42'" in message and "pay" in message and "session-7" in message
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert (record.event_path, record.handler, record.cid) == ("pay/42", "pay", "session-7")  # type: ignore[attr-defined]


async def test_a_context_whose_source_logs_failures_itself_is_not_logged_by_the_core(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()

    @app.on_event("pay/{order}")
    async def pay(order: Param) -> None:
        raise RuntimeError("card declined")

    ctx = app.new_ctx()
    assert ctx.log_failures
    ctx.log_failures = False
    with pytest.raises(RuntimeError, match="card declined"):
        await ctx.trigger_event("pay/42")
    assert [r for r in caplog.records if r.name == "tiny_listener"] == []


async def test_unawaited_failing_task_never_reports_exception_never_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))

    @app.on_event("x")
    async def handler() -> None:
        raise RuntimeError("nobody awaits me")

    task = app.trigger_event("x")
    await asyncio.wait([task])
    del task
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert loop_errors == []
    assert len([r for r in caplog.records if r.name == "tiny_listener"]) == 1


async def test_handler_timeout() -> None:
    app = App()

    @app.on_event("slow")
    async def slow() -> None:
        await asyncio.Event().wait()

    with pytest.raises(asyncio.TimeoutError):
        await app.trigger_event("slow", timeout=0.01)


def run_in_thread(app: Listener) -> tuple[threading.Thread, list[BaseException]]:  # type: ignore[type-arg]
    errors: list[BaseException] = []

    def target() -> None:
        try:
            app.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, errors


def test_run_in_a_thread_without_signals_and_stop() -> None:
    app = App()
    started = threading.Event()
    stopped: list[str] = []

    @app.startup
    async def up() -> None:
        started.set()

    @app.shutdown
    async def down() -> None:
        stopped.append("down")

    thread, errors = run_in_thread(app)
    assert started.wait(10)
    app.stop()
    thread.join(10)
    assert not thread.is_alive() and errors == [] and stopped == ["down"]


def test_run_after_an_earlier_asyncio_run_in_the_same_thread() -> None:
    async def nothing() -> None: ...

    asyncio.run(nothing())
    app = App()

    @app.startup
    async def stop_soon() -> None:
        await app.graceful_shutdown()

    app.run()  # 1.2 failed here with "There is no current event loop"


def test_get_current_running_listener_and_duplicate_listener() -> None:
    app = App()
    seen: list[Any] = []

    @app.startup
    async def check() -> None:
        seen.append(get_current_running_listener())
        try:
            App().run()
        except DuplicateListener as exc:
            seen.append(exc)
        await app.graceful_shutdown()

    with pytest.raises(ListenerNotFound):
        get_current_running_listener()
    app.run()
    assert seen[0] is app and isinstance(seen[1], DuplicateListener)
    with pytest.raises(ListenerNotFound):
        get_current_running_listener()


def test_listen_failure_is_raised_by_run_after_shutdown_hooks() -> None:
    class Broken(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            raise ConnectionError("no broker")

    app = Broken()
    calls: list[str] = []

    @app.shutdown
    async def down() -> None:
        calls.append("down")

    with pytest.raises(ConnectionError):
        app.run()
    assert calls == ["down"]


def test_shutdown_stops_listen_runs_hooks_then_drains_in_flight_events() -> None:
    order: list[str] = []

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            try:
                self.trigger_event("work")
                await asyncio.Event().wait()
            finally:
                order.append("listen stopped")

    app = Server(shutdown_timeout=10)
    release: list[asyncio.Event] = []

    @app.startup
    async def up() -> None:
        release.append(asyncio.Event())  # made in the running loop (Python 3.9 binds at creation)

    @app.on_event("work")
    async def work() -> None:
        app.stop()
        await release[0].wait()
        order.append("event finished")

    @app.shutdown
    async def down() -> None:
        order.append("shutdown hook")
        release[0].set()

    app.run()
    assert order == ["listen stopped", "shutdown hook", "event finished"]


def test_shutdown_deadline_cancels_only_the_listeners_own_tasks() -> None:
    cancelled: list[str] = []
    foreign: list[asyncio.Task[None]] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            self.trigger_event("stuck")
            self.spawn(forever("spawned"))
            foreign.append(asyncio.get_running_loop().create_task(forever("foreign")))
            self.stop()

    app = Server(shutdown_timeout=0.05)

    @app.on_event("stuck")
    async def stuck() -> None:
        await forever("event")

    @app.shutdown
    async def down() -> None:
        assert not foreign[0].done()

    app.run()
    # The shutdown cancelled the event and the spawned task; the foreign task was left to the
    # loop's final clean-up (as asyncio.run does), after the listener had finished.
    assert cancelled[:2] == ["event", "spawned"] or cancelled[:2] == ["spawned", "event"]
    assert cancelled[2:] == ["foreign"]


def test_second_stop_request_forces_shutdown() -> None:
    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            self.trigger_event("stuck")

    app = Server(shutdown_timeout=60)
    outcome: list[str] = []

    @app.on_event("stuck")
    async def stuck() -> None:
        app.stop()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    @app.shutdown
    async def force() -> None:
        app.stop()  # the second request, as a second Ctrl-C

    app.run()
    assert outcome == ["cancelled"]


def test_signal_handlers_are_restored_after_run() -> None:
    def previous(signum: int, frame: Any) -> None: ...

    old = signal.signal(signal.SIGTERM, previous)
    try:
        app = App()

        @app.startup
        async def stop() -> None:
            assert signal.getsignal(signal.SIGTERM) is not previous
            signal.raise_signal(signal.SIGTERM)

        app.run()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_spawned_drain_task_is_awaited_at_shutdown() -> None:
    finished: list[str] = []

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            async def ack_later() -> None:
                await asyncio.sleep(0.01)
                finished.append("acked")

            self.spawn(ack_later(), drain=True)
            self.stop()

    Server(shutdown_timeout=10).run()
    assert finished == ["acked"]


async def test_a_failing_observer_is_logged_and_does_not_break_the_event(caplog: pytest.LogCaptureFixture) -> None:
    app = App()
    seen: list[str] = []

    class Broken:
        def event_started(self, event: Event) -> None:
            raise RuntimeError("observer bug")

        def event_ended(self, event: Event) -> None:
            raise RuntimeError("observer bug")

    class Recorder:
        def event_started(self, event: Event) -> None:
            seen.append(f"start {event.path}")

        def event_ended(self, event: Event) -> None:
            seen.append(f"end {event.state.value}")

    app.add_event_observer(Broken())
    app.add_event_observer(Recorder())

    @app.on_event("x")
    async def handler() -> str:
        return "ok"

    assert await app.trigger_event("x") == "ok"
    assert seen == ["start x", "end done"]
    assert app.ctxs == {}
    assert len([r for r in caplog.records if "observer" in r.getMessage()]) == 2


def test_a_task_that_swallows_its_cancellation_does_not_hang_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    async def stubborn() -> None:
        forever = asyncio.Event()
        try:
            await forever.wait()
        except asyncio.CancelledError:
            pass  # ignored once, as some client libraries' wait_for can
        await forever.wait()  # the loop's final clean-up cancels it again

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            self.spawn(stubborn(), name="stubborn-task")
            self.stop()

    app = Server(shutdown_timeout=0.05)
    app.cancel_timeout = 0.05
    app.run()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignored their cancellation" in w and "stubborn-task" in w for w in warnings)


class OwnBaseException(BaseException):
    """A BaseException subclass of the app's own."""


NOT_EXCEPTIONS = [KeyboardInterrupt, SystemExit, GeneratorExit, OwnBaseException]


@pytest.mark.parametrize("raiser", ["handler", "handler with timeout", "dependency", "timed dependency", "hook"])
@pytest.mark.parametrize("error_type", NOT_EXCEPTIONS, ids=lambda t: t.__name__)
def test_a_base_exception_fails_its_event_like_any_error_and_the_listener_runs_on(
    error_type: type[BaseException], raiser: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[BaseException | None] = []
    results: list[Any] = []
    shutdown_ran: list[bool] = []

    async def failing_dependency() -> None:
        raise error_type()

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            others = [self.trigger_event(f"ok/{i}") for i in range(20)]
            try:
                await self.trigger_event("boom/1", cid="ctx-1", timeout=5 if "timeout" in raiser else None)
            except EventFailed as exc:
                results.append(exc)
            results.append(await asyncio.gather(*others))
            self.stop()

    app = Server()

    @app.before_event
    async def before(event: Event) -> None:
        if raiser == "hook" and event.path.startswith("boom"):
            raise error_type()

    if raiser in ("dependency", "timed dependency"):
        timeout = 5 if raiser == "timed dependency" else None

        @app.on_event("boom/{n}")
        async def boom(value: Any = depend(failing_dependency, timeout=timeout)) -> None: ...

    else:

        @app.on_event("boom/{n}")
        async def boom(n: Param) -> None:  # type: ignore[misc]
            if raiser != "hook":
                raise error_type()

    @app.on_event("ok/{n}")
    async def ok(n: Param) -> str:
        await asyncio.sleep(0)
        return n  # type: ignore[no-any-return]

    @app.on_error(BaseException)
    async def offered(event: Event) -> None:
        seen.append(event.error)
        raise event.error  # type: ignore[misc]  # not taken: it stays a failure

    @app.shutdown
    async def stopped() -> None:
        shutdown_ran.append(True)

    try:
        app.run()
    except BaseException as exc:  # what must not happen, reported as a failure
        pytest.fail(f"the listener stopped with {exc!r}")
    failed, others = results
    assert isinstance(failed, EventFailed) and isinstance(failed.__cause__, error_type)
    assert failed.error is failed.__cause__ and failed.handler == "boom"
    assert [type(error) for error in seen] == [error_type]
    assert others == [str(i) for i in range(20)] and shutdown_ran == [True]
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (record.event_path, record.handler, record.cid) == ("boom/1", "boom", "ctx-1")  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[0] is error_type


async def test_an_on_error_hook_raising_a_base_exception_is_logged_and_does_not_stop_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()

    @app.on_event("x")
    async def handler() -> None:
        raise ValueError("first")

    @app.on_error(ValueError)
    async def clumsy() -> None:
        raise SystemExit(3)

    with pytest.raises(EventFailed) as failed:
        await app.trigger_event("x")
    assert isinstance(failed.value.error, SystemExit)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [SystemExit]


def test_on_error_for_cancellation_is_refused_and_for_interrupts_says_what_it_means() -> None:
    app = App()

    async def hook() -> None: ...

    with pytest.raises(TypeError, match="never run"):
        app.on_error(asyncio.CancelledError)(hook)
    with pytest.raises(TypeError, match="exception class"):
        app.on_error("ValueError")(hook)  # type: ignore[arg-type]
    for interrupt in (KeyboardInterrupt, SystemExit):
        with pytest.warns(InterruptHookWarning, match="Ctrl-C and SIGTERM never reach it"):
            app.on_error(interrupt)(hook)
    assert len(app._error_handlers) == 2  # registered all the same


async def test_on_error_keyboard_interrupt_is_called_for_a_handler_raising_it() -> None:
    app = App()
    with pytest.warns(InterruptHookWarning):

        @app.on_error(KeyboardInterrupt)
        async def interrupted(event: Event) -> str:
            return "handled"

    @app.on_event("x")
    async def handler() -> None:
        raise KeyboardInterrupt

    assert await app.trigger_event("x") is None  # taken by the hook, as any error


def test_an_event_that_never_lets_go_is_abandoned_once_and_collected_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            self.trigger_event("stubborn")
            await asyncio.sleep(0)
            self.stop()

    app = Server(shutdown_timeout=0.05)
    app.cancel_timeout = 0.05

    @app.on_event("stubborn")
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    app.run()
    del app, stubborn
    gc.collect()  # closes the abandoned coroutine: no traceback, no asyncio complaint
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert messages == [
        "cancelling 1 event(s) still running at shutdown",
        "1 task(s) ignored their cancellation and are left behind: event 'stubborn' in handler stubborn",
    ]
