from __future__ import annotations

import asyncio
import logging
from typing import List

import pytest

from tiny_listener import Context, Data, Event, EventNotFound, EventState, Param
from tiny_listener.testing import TestClient

from .apps import NoIntakeApp


def make_app() -> NoIntakeApp:
    app = NoIntakeApp()

    @app.startup
    async def open_pool() -> None:
        app.calls.append("startup")

    @app.shutdown
    async def close_pool() -> None:
        app.calls.append("shutdown")

    @app.on_event("GET:/user/{username}")
    async def hello(username: Param, greeting: Data = "Hello") -> str:
        return f"{greeting}, {username}!"

    @app.on_event("order:{id:int}:created", retries=3)
    async def on_order(id: Param) -> int:
        return id * 2

    @app.on_event("boom")
    async def boom() -> None:
        raise ValueError("boom")

    return app


async def test_startup_hooks_run_on_enter_and_shutdown_hooks_on_exit_without_listen() -> None:
    app = make_app()
    async with TestClient(app) as client:
        assert app.calls == ["startup"]
        assert await client.trigger("GET:/user/bob") == "Hello, bob!"
    assert app.calls == ["startup", "shutdown"]
    # The app is left as it was: its own listen() again, no observer.
    assert "listen" not in app.__dict__
    assert "install_signal_handlers" not in app.__dict__


async def test_trigger_passes_data_and_cid_and_records_the_event() -> None:
    app = make_app()
    async with TestClient(app) as client:
        result = await client.trigger("GET:/user/ann", data={"greeting": "Hi"}, cid="session-1")
        assert result == "Hi, ann!"
        assert await client.trigger("order:21:created") == 42
    first, second = client.events
    assert (first.path, first.handler, first.params, first.data, first.cid) == (
        "GET:/user/ann",
        "hello",
        {"username": "ann"},
        {"greeting": "Hi"},
        "session-1",
    )
    assert first.state is EventState.DONE and first.ok and first.error is None
    assert first.duration >= 0.0
    assert second.params == {"id": 21} and second.result == 42


async def test_trigger_raises_the_handler_error_and_records_it(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    async with TestClient(app) as client:
        with pytest.raises(ValueError, match="boom") as raised:
            await client.trigger("boom")
        with pytest.raises(EventNotFound):
            await client.trigger("no/such/path")
    (record,) = client.events
    assert record.state is EventState.FAILED and not record.ok
    assert record.error is raised.value
    # The core logs the failure once, with the event's path.
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "boom" in failures[0].getMessage()


async def test_error_taken_by_an_on_error_handler_returns_none() -> None:
    app = make_app()
    seen: List[BaseException | None] = []

    @app.on_error(ValueError)
    async def on_value_error(event: Event) -> None:
        seen.append(event.error)

    async with TestClient(app) as client:
        assert await client.trigger("boom") is None
    assert isinstance(seen[0], ValueError)
    assert client.events[0].state is EventState.FAILED


async def test_in_flight_events_are_drained_at_exit() -> None:
    app = make_app()
    gate = asyncio.Event()
    started = asyncio.Event()

    @app.on_event("slow")
    async def slow() -> str:
        started.set()
        await gate.wait()
        return "finished"

    @app.shutdown
    async def open_gate() -> None:
        gate.set()

    async with TestClient(app) as client:
        task = app.trigger_event("slow")
        await started.wait()
    assert task.done() and task.result() == "finished"
    assert [r.state for r in client.events] == [EventState.DONE]


async def test_events_still_running_after_the_shutdown_timeout_are_cancelled() -> None:
    app = make_app()
    started = asyncio.Event()

    @app.on_event("stuck")
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    async with TestClient(app, shutdown_timeout=0.05) as client:
        task = app.trigger_event("stuck")
        await started.wait()
    assert task.cancelled()
    assert [r.state for r in client.events] == [EventState.CANCELLED]
    assert app.shutdown_timeout == NoIntakeApp.shutdown_timeout


async def test_wait_idle_waits_for_events_triggered_by_handlers() -> None:
    app = make_app()

    @app.on_event("fan-out")
    async def fan_out(event: Event) -> None:
        for user in ("a", "b"):
            event.ctx.trigger_event(f"GET:/user/{user}")

    async with TestClient(app) as client:
        await client.trigger("fan-out")
        await client.wait_idle()
        assert sorted(r.result for r in client.events if r.handler == "hello") == ["Hello, a!", "Hello, b!"]


async def test_a_failing_startup_hook_raises_and_leaves_the_app_untouched() -> None:
    app = NoIntakeApp()

    @app.startup
    async def broken() -> None:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError, match="database down"):
        async with TestClient(app):
            raise AssertionError("the body must not run")
    assert "listen" not in app.__dict__
    # The failed client released the app: a new one gets the same error, not "already running".
    with pytest.raises(ConnectionError):
        async with TestClient(app):
            pass


async def test_one_client_at_a_time_per_app_and_trigger_needs_a_running_client() -> None:
    app = make_app()
    client = TestClient(app)
    with pytest.raises(RuntimeError, match="not running"):
        await client.trigger("GET:/user/bob")
    async with client:
        with pytest.raises(RuntimeError, match="already running"):
            async with TestClient(app):
                pass
    async with TestClient(app) as again:
        assert await again.trigger("GET:/user/bob") == "Hello, bob!"


async def test_trigger_gives_a_new_context_its_scope() -> None:
    app = make_app()

    @app.on_event("whoami")
    async def whoami(ctx: Context) -> str:
        return str(ctx.scope["user"])

    async with TestClient(app) as client:
        assert await client.trigger("whoami", scope={"user": "ann"}) == "ann"
        assert await client.trigger("whoami", cid="s", scope={"user": "bob"}) == "bob"
