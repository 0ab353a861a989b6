"""Code written for tiny-listener 1.2 keeps working: each test is one thing 1.2 code or its
test fixtures do, through the public API."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Iterator

import pytest

from tiny_listener import (
    Event,
    EventNotFound,
    EventState,
    Listener,
    Param,
    Route,
    RouteTable,
)


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        await self.wait_for_shutdown()


@pytest.fixture
def no_thread_loop() -> Iterator[None]:
    """Leave this thread with no event loop set, and close whatever loop the test set."""
    asyncio.set_event_loop(None)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: no loop set
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_event_loop()
            except RuntimeError:
                loop = None
        asyncio.set_event_loop(None)
        if loop is not None:
            loop.close()


# ---------------------------------------------------------------------- 1. listener.routes = {...}


async def test_a_plain_dict_assigned_to_routes_keeps_dispatch_working() -> None:
    async def greet(name: Param) -> str:
        return f"hello {name}"

    async def fallback() -> str:
        return "fallback"

    app = App()
    first, second = Route("greet/{name}", greet), Route("{_:path}", fallback)
    app.routes = {first.name: first, second.name: second}

    assert isinstance(app.routes, RouteTable) and list(app.routes) == ["greet", "fallback"]
    assert await app.trigger_event("greet/ann") == "hello ann"
    assert await app.trigger_event("anything") == "fallback"
    # The table is the listener's own: what is removed or added later is seen by dispatch.
    del app.routes["fallback"]
    with pytest.raises(EventNotFound):
        app.trigger_event("anything")


def test_a_routes_dict_holding_something_else_than_routes_is_refused() -> None:
    app = App()
    with pytest.raises(TypeError, match=r"routes\['x'\] must be a tiny_listener.Route"):
        app.routes = {"x": "not a route"}  # type: ignore[dict-item]


# ---------------------------------------------------------------------- 2. done() on a hand-built event


async def test_an_event_built_by_hand_is_marked_done_from_a_loop_callback() -> None:
    async def job() -> None: ...

    app = App()
    route = Route("job", job)
    app.routes = {route.name: route}
    event: Event[Any] = Event(app.new_ctx(), route)
    asyncio.get_running_loop().call_soon(event.done)
    await asyncio.wait_for(event.wait_until_done(), timeout=10)
    assert event.is_done and event.state is EventState.DONE
