"""HTTPTestClient: real HTTP/1.1 to an app served in the test's process, over loopback."""

from __future__ import annotations

import asyncio
from typing import Any, Dict

import pytest

from tiny_listener import EventState, Listener, Param, depend
from tiny_listener.http import HTTPContext, HTTPListener
from tiny_listener.testing.http import HTTPTestClient


async def get_greeting() -> str:
    return "Hello"


def make_app() -> HTTPListener:
    app = HTTPListener(port=8000)
    app.calls = []  # type: ignore[attr-defined]

    @app.startup
    async def started() -> None:
        app.calls.append("startup")  # type: ignore[attr-defined]

    @app.shutdown
    async def stopped() -> None:
        app.calls.append("shutdown")  # type: ignore[attr-defined]

    @app.on_event("GET:/user/{username}")
    async def hello(username: Param, greeting: str = depend(get_greeting)) -> str:
        return f"{greeting}, {username}!"

    @app.on_event("POST:/orders")
    async def create_order(ctx: HTTPContext) -> Dict[str, Any]:
        order = await ctx.json()
        return {"id": 1, **order}

    @app.on_event("GET:/throw")
    async def throw() -> None:
        raise RuntimeError("broken")

    return app


async def test_requests_get_real_responses_and_events_are_recorded() -> None:
    app = make_app()
    async with HTTPTestClient(app) as http:
        assert app.calls == ["startup"]  # type: ignore[attr-defined]
        assert http.port not in (0, 8000)
        hello = await http.get("/user/bob")
        assert (hello.status_code, hello.text) == (200, "Hello, bob!")
        assert hello.header("Content-Type") == "text/plain; charset=utf-8"
        created = await http.post("/orders", json={"sku": "tea"})
        assert created.status_code == 200 and created.json() == {"id": 1, "sku": "tea"}
        assert (await http.get("/nowhere")).status_code == 404
        assert (await http.delete("/user/bob")).status_code == 405
    assert app.calls == ["startup", "shutdown"]  # type: ignore[attr-defined]
    # The app's own host and port are put back.
    assert (app.host, app.port) == ("127.0.0.1", 8000)
    assert [(r.handler, r.state) for r in http.events] == [
        ("hello", EventState.DONE),
        ("create_order", EventState.DONE),
    ]


async def test_a_failing_handler_is_a_500_and_its_error_is_recorded(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    async with HTTPTestClient(app) as http:
        response = await http.get("/throw")
        assert response.status_code == 500
        # The connection is still usable after the error.
        assert (await http.get("/user/ann")).text == "Hello, ann!"
    failed = http.events[0]
    assert failed.state is EventState.FAILED and isinstance(failed.error, RuntimeError)


async def test_dependency_overrides_apply_to_http_requests() -> None:
    app = make_app()

    async def fake_greeting() -> str:
        return "Howdy"

    app.dependency_overrides[get_greeting] = fake_greeting
    async with HTTPTestClient(app) as http:
        assert (await http.get("/user/bob")).text == "Howdy, bob!"


async def test_a_request_in_flight_at_exit_is_answered_before_shutdown_completes() -> None:
    app = make_app()
    release = asyncio.Event()
    entered = asyncio.Event()

    @app.on_event("GET:/slow")
    async def slow() -> str:
        entered.set()
        await release.wait()
        return "late"

    @app.shutdown
    async def let_it_finish() -> None:
        release.set()

    http = HTTPTestClient(app)
    async with http:
        pending = asyncio.ensure_future(http.get("/slow"))
        await entered.wait()
    response = await pending
    assert (response.status_code, response.text) == (200, "late")


async def test_a_listen_failure_is_raised_on_enter() -> None:
    app = make_app()
    app.host = "203.0.113.1"  # TEST-NET-3: not an address of this machine, so bind fails
    with pytest.raises(OSError):
        async with HTTPTestClient(app, host="203.0.113.1"):
            raise AssertionError("the body must not run")
    assert app.host == "203.0.113.1"


class TinyHTTP(Listener):  # type: ignore[type-arg]
    """A listener with host/port but no ``wait_until_serving``: answers every request 200."""

    host = "127.0.0.1"
    port = 0

    async def listen(self) -> None:
        server = await asyncio.start_server(self._serve, self.host, self.port)
        async with server:
            await server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readuntil(b"\r\n\r\n")
            path = request_line.split(b" ")[1].decode()
            body = (await self.trigger_event(path)).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:  # also when the client went first (Python < 3.11 would not close it)
            writer.close()


async def test_any_listener_with_host_and_port_can_be_reached() -> None:
    app = TinyHTTP()

    @app.on_event("/echo/{word}")
    async def echo(word: Param) -> str:
        return word

    async with HTTPTestClient(app) as http:
        assert http.port != 0
        assert (await http.get("/echo/one")).text == "one"
        # The server closed the connection: the client opens a new one.
        assert (await http.get("/echo/two")).text == "two"


def test_a_listener_without_host_and_port_is_rejected() -> None:
    class NoNetwork(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None: ...

    with pytest.raises(TypeError, match="no host/port"):
        HTTPTestClient(NoNetwork())
