"""Code written for tiny-listener 1.2 keeps working: each test is one thing 1.2 code or its
test fixtures do, through the public API."""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import pytest

from tests.cli_helpers import running_cli, write_module
from tests.conftest import require_service
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


# ---------------------------------------------------------------------- 8. Ctrl-C on a listen() that owns its client


@pytest.mark.parametrize("keeps_connections", [False, True], ids=["listen-owns-client", "built-in-style"])
def test_an_event_failing_because_cancelled_listen_closed_its_client(
    keeps_connections: bool, caplog: pytest.LogCaptureFixture
) -> None:
    class Client:
        def __init__(self) -> None:
            self.closed = asyncio.Event()

        def send(self) -> None:
            if self.closed.is_set():
                raise ConnectionError("client closed")

    class Owner(Listener):  # type: ignore[type-arg]
        keeps_connections_while_draining = keeps_connections

        async def listen(self) -> None:
            client = Client()  # as ``async with Client() as client``: closed when cancelled
            try:
                self.trigger_event("produce", data={"client": client})
                await asyncio.Event().wait()
            finally:
                client.closed.set()

    app = Owner()

    @app.on_event("produce")
    async def produce(client: Data) -> None:
        app.stop()
        await client.closed.wait()
        client.send()

    app.run()
    failures = [r for r in caplog.records if "produce" in r.getMessage() and "failed" in r.getMessage()]
    assert len(failures) == 1
    (record,) = failures
    if keeps_connections:  # the connection was meant to stay: a real failure, with its traceback
        assert record.levelname == "ERROR" and record.exc_info is not None
    else:
        assert record.levelname == "WARNING" and record.exc_info is None
        assert "failed during shutdown, after listen() was cancelled" in record.getMessage()
        assert "ConnectionError('client closed')" in record.getMessage()


MQTT_APP = """
import asyncio
import itertools

from aiomqtt import Client

from tiny_listener import Data, Listener, Param

TOPICS = "{prefix}"


class Sensors(Listener):
    async def listen(self):
        # As in 1.2's MQTT example: the client lives exactly as long as listen().
        async with Client("127.0.0.1", 1883) as client:
            await client.subscribe(TOPICS + "/+/reading")
            self.trigger_event("/simulate", data={{"client": client}})
            async for message in client.messages:
                self.new_ctx().trigger_event(message.topic.value, data={{"payload": message.payload}})


app = Sensors()


@app.on_event("/simulate")
async def simulate(client: Data):
    for n in itertools.count():
        await client.publish(TOPICS + "/probe/reading", n)
        await asyncio.sleep(0.02)


@app.on_event(TOPICS + "/{{name}}/reading")
async def reading(payload: Data, name: Param):
    print("reading", name, payload.decode(), flush=True)
"""

AMQP_APP = """
import asyncio
import itertools

import aio_pika

from tiny_listener import Data, Listener, Param

QUEUE = "{prefix}"


class Orders(Listener):
    def __init__(self):
        super().__init__()
        self.connection = None

    async def listen(self):
        # As in 1.2's RabbitMQ example: the connection is listen()'s, and a hook closes it too.
        self.connection = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1/")
        async with self.connection:
            channel = await self.connection.channel()
            queue = await channel.declare_queue(QUEUE, auto_delete=True)
            self.trigger_event("/produce", data={{"channel": channel}})
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        self.trigger_event("/order/" + message.app_id, data={{"body": message.body}})


app = Orders()


@app.shutdown
async def close():
    await app.connection.close()


@app.on_event("/produce")
async def produce(channel: Data):
    for n in itertools.count():
        message = aio_pika.Message(body=str(n).encode(), app_id=str(n))
        await channel.default_exchange.publish(message, routing_key=QUEUE)
        await asyncio.sleep(0.02)


@app.on_event("/order/{{number}}")
async def order(body: Data, number: Param):
    print("order", number, flush=True)
"""


def interrupt_mid_stream(tmp_path: Path, source: str, progress: str) -> list[str]:
    """Run ``source`` as ``app:app`` with the command line, send SIGINT once it printed
    ``progress`` three times, and return its output (stdout and stderr) once it exited 0."""
    write_module(tmp_path, "compat_app", source)
    with running_cli("--app-dir", str(tmp_path), "compat_app:app") as (proc, reader):
        for _ in range(3):
            assert reader.wait_for(progress, timeout=30), f"no {progress!r} line; output: {reader.seen}"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, f"exit status {proc.returncode}; output: {reader.seen}"
    return reader.seen


def assert_stopped_quietly(output: list[str]) -> None:
    text = "\n".join(output)
    assert "ERROR" not in text and "Traceback" not in text, text
    assert "signal 2 received" in text


@pytest.mark.broker
def test_ctrl_c_on_a_12_style_mqtt_listen_that_publishes_in_a_loop(tmp_path: Path) -> None:
    pytest.importorskip("aiomqtt")
    require_service("Mosquitto", "127.0.0.1", 1883)
    prefix = f"tl-test/{uuid.uuid4().hex[:10]}"
    output = interrupt_mid_stream(tmp_path, MQTT_APP.format(prefix=prefix), "reading probe")
    assert_stopped_quietly(output)


@pytest.mark.broker
def test_ctrl_c_on_a_12_style_rabbitmq_consumer_mid_stream(tmp_path: Path) -> None:
    pytest.importorskip("aio_pika")
    require_service("RabbitMQ", "127.0.0.1", 5672)
    queue = f"tl-test-{uuid.uuid4().hex[:10]}"
    output = interrupt_mid_stream(tmp_path, AMQP_APP.format(prefix=queue), "order")
    assert_stopped_quietly(output)
