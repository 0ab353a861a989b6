"""Code written for tiny-listener 1.2 keeps working: each test is one thing 1.2 code or its
test fixtures do, through the public API."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any, Iterator
from unittest import mock

import pytest

from tiny_listener import (
    Data,
    Depends,
    Event,
    EventNotFound,
    EventState,
    Listener,
    ListenerNotFound,
    Param,
    Route,
    RouteTable,
    depend,
    get_current_running_listener,
    import_from_string,
)
from tiny_listener.importer import ImportFromStringError


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


# ---------------------------------------------------------------------- 3. trigger_event with no loop running


def test_an_event_triggered_before_run_runs_once_the_listener_runs(no_thread_loop: None) -> None:
    class Jobs(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            await early  # triggered before run(): it runs on run()'s loop
            self.stop()

    app = Jobs()
    done: list[str] = []

    @app.on_event("job/{name}")
    async def job(name: Param) -> str:
        done.append(name)
        return name

    early = app.trigger_event("job/early")  # as at a module's top level: no loop runs
    app.run()
    assert done == ["early"] and early.result() == "early"
    assert app.ctxs == {}


def test_an_event_triggered_with_no_loop_running_goes_to_the_threads_loop(no_thread_loop: None) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = App()

    @app.on_event("double/{n:int}")
    async def double(n: Param) -> int:
        return int(n) * 2

    task = app.trigger_event("double/21")
    assert task.get_loop() is loop and not task.done()
    assert loop.run_until_complete(task) == 42


def test_triggering_from_another_thread_while_the_listener_runs_is_refused() -> None:
    app = App()
    outcome: list[BaseException] = []

    @app.on_event("x")
    async def handler() -> None: ...

    def from_a_thread() -> None:
        try:
            app.trigger_event("x")
        except RuntimeError as exc:
            outcome.append(exc)

    @app.startup
    async def try_it() -> None:
        thread = threading.Thread(target=from_a_thread)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        app.stop()

    app.run()
    assert len(outcome) == 1 and "runs in another thread" in str(outcome[0])


# ---------------------------------------------------------------------- 4. setup_event_loop()


def test_setup_event_loop_returns_the_loop_already_set(no_thread_loop: None) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    assert App.setup_event_loop() is loop
    assert App().setup_event_loop() is loop


def test_setup_event_loop_makes_a_new_loop_when_none_is_usable(no_thread_loop: None) -> None:
    closed = asyncio.new_event_loop()
    closed.close()
    asyncio.set_event_loop(closed)
    fresh = App.setup_event_loop()
    assert fresh is not closed and not fresh.is_closed()
    assert App.setup_event_loop() is fresh  # and it is now the thread's loop

    in_thread: list[asyncio.AbstractEventLoop] = []

    def setup_in_a_thread() -> None:
        loop = App.setup_event_loop()
        in_thread.append(loop)
        loop.close()

    thread = threading.Thread(target=setup_in_a_thread)
    thread.start()
    thread.join(10)
    assert len(in_thread) == 1 and in_thread[0] is not fresh


def test_run_from_inside_a_running_loop_is_refused_without_touching_that_loop() -> None:
    app = App()

    async def inside() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            app.run()
        assert not asyncio.get_running_loop().is_closed()

    asyncio.run(inside())


# ---------------------------------------------------------------------- 5. import_from_string


def test_a_missing_module_is_a_module_not_found_error() -> None:
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_string("tl_no_such_module_anywhere:app")
    assert isinstance(info.value, ImportFromStringError)
    assert info.value.name == "tl_no_such_module_anywhere"


# ---------------------------------------------------------------------- 6. a Depends called directly


async def test_a_dependency_called_directly_needs_no_listener() -> None:
    class BareContext:  # what a test builds by hand: a cache, no listener
        def __init__(self) -> None:
            self.cache: dict[Any, Any] = {}

    class BareEvent:
        def __init__(self) -> None:
            self.data = {"age": 7}
            self.ctx = BareContext()

    calls: list[str] = []

    async def load_user(name: Param, age: Data) -> dict[str, Any]:
        calls.append(name)
        return {"name": name, "age": age}

    async def describe(first: Any = depend(load_user), again: Any = depend(load_user)) -> str:
        assert first is again  # cached per context
        return f"{first['name']} is {first['age']}"

    for make in (Depends, depend):
        event = BareEvent()
        assert await make(describe)(event, {"name": "ann"}) == "ann is 7"
    assert calls == ["ann", "ann"]  # once per context


# ---------------------------------------------------------------------- 7. Listener._instances


def test_a_listener_placed_in_instances_is_the_current_one_until_cleared() -> None:
    app = App()
    with pytest.raises(ListenerNotFound):
        get_current_running_listener()
    App._instances[threading.get_ident()] = app
    try:
        assert get_current_running_listener() is app
        assert dict(Listener._instances) == {threading.get_ident(): app}
    finally:
        App._instances.clear()
    with pytest.raises(ListenerNotFound):
        get_current_running_listener()


def test_a_mapping_patched_over_instances_is_honoured() -> None:
    app = App()
    with mock.patch.object(Listener, "_instances", {threading.get_ident(): app}):
        assert get_current_running_listener() is app
    with pytest.raises(ListenerNotFound):
        get_current_running_listener()


def test_instances_shows_the_listener_running_in_this_thread() -> None:
    app = App()
    seen: list[Any] = []

    @app.startup
    async def look() -> None:
        ident = threading.get_ident()
        seen.append((ident in Listener._instances, Listener._instances.get(ident)))
        Listener._instances.clear()  # as a 1.2 fixture would: the running listener stays
        seen.append(get_current_running_listener())
        app.stop()

    app.run()
    assert seen == [(True, app), app]
    assert threading.get_ident() not in Listener._instances
