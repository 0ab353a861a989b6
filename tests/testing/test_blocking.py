"""BlockingTestClient: the TestClient for plain ``def`` tests."""

from __future__ import annotations

import asyncio

import pytest

from tiny_listener import EventState, Param
from tiny_listener.testing import BlockingTestClient

from .apps import NoIntakeApp


def make_app() -> NoIntakeApp:
    app = NoIntakeApp()

    @app.startup
    async def started() -> None:
        app.calls.append("startup")

    @app.shutdown
    async def stopped() -> None:
        app.calls.append("shutdown")

    @app.on_event("GET:/user/{username}")
    async def hello(username: Param) -> str:
        return f"Hello, {username}!"

    @app.on_event("boom")
    async def boom() -> None:
        raise ValueError("boom")

    @app.on_event("hang")
    async def hang() -> None:
        await asyncio.Event().wait()

    return app


def test_plain_test_function_triggers_events_and_gets_results_and_errors() -> None:
    app = make_app()
    with BlockingTestClient(app) as client:
        assert app.calls == ["startup"]
        assert client.trigger("GET:/user/bob", cid="c1") == "Hello, bob!"
        with pytest.raises(ValueError, match="boom"):
            client.trigger("boom")
    assert app.calls == ["startup", "shutdown"]
    first = client.events[0]
    assert (first.handler, first.cid, first.state) == ("hello", "c1", EventState.DONE)
    assert client.events[1].state is EventState.FAILED


def test_call_runs_a_coroutine_function_on_the_app_loop() -> None:
    app = make_app()
    with BlockingTestClient(app) as client:
        task_result = client.call(lambda: app.trigger_event("GET:/user/ann"))
        assert task_result == "Hello, ann!"


def test_a_hung_handler_fails_the_call_after_call_timeout_and_is_cancelled() -> None:
    app = make_app()
    with BlockingTestClient(app, call_timeout=0.2, shutdown_timeout=0.05) as client:
        with pytest.raises(TimeoutError, match=r"did not answer within 0.2s"):
            client.trigger("hang")
    assert [r.state for r in client.events] == [EventState.CANCELLED]


def test_methods_need_a_running_client() -> None:
    client = BlockingTestClient(make_app())
    with pytest.raises(RuntimeError, match="not running"):
        client.trigger("GET:/user/bob")


def test_blocking_http_client_speaks_http_to_the_app() -> None:
    from tiny_listener.http import HTTPListener
    from tiny_listener.testing import BlockingHTTPTestClient

    app = HTTPListener()

    @app.on_event("GET:/user/{username}")
    async def hello(username: Param) -> str:
        return f"Hello, {username}!"

    with BlockingHTTPTestClient(app) as http:
        assert http.base_url.startswith("http://127.0.0.1:")
        response = http.get("/user/bob")
        assert (response.status_code, response.text) == (200, "Hello, bob!")
        assert http.head("/user/bob").body == b""
    assert [r.handler for r in http.events] == ["hello", "hello"]
