from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest

from tiny_listener import (
    Context,
    ContextAlreadyExists,
    ContextNotFound,
    Data,
    Event,
    EventNotFound,
    EventState,
    Listener,
    Param,
)


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        await self.wait_for_shutdown()


async def test_new_ctx_and_get_ctx() -> None:
    app = App()
    ctx = app.new_ctx("a", scope={"k": 1})
    assert app.get_ctx("a") is ctx and ctx.scope == {"k": 1} and ctx.listener is app
    with pytest.raises(ContextAlreadyExists):
        app.new_ctx("a")
    with pytest.raises(ContextNotFound):
        app.get_ctx("b")


async def test_anonymous_context_is_found_right_after_new_ctx_and_released_after_its_events() -> None:
    app = App()

    @app.on_event("x")
    async def handler(ctx: Context) -> str:
        assert ctx.is_alive
        return ctx.cid

    ctx = app.new_ctx(scope={"request": 1})
    assert app.get_ctx(ctx.cid) is ctx and ctx.is_alive
    assert await ctx.trigger_event("x") == ctx.cid
    assert ctx.cid not in app.ctxs and not ctx.is_alive
    # Used again, it is registered again while it runs events.
    assert await ctx.trigger_event("x") == ctx.cid
    assert app.ctxs == {}


async def test_anonymous_contexts_are_unique_and_freed() -> None:
    app = App()

    @app.on_event("x")
    async def handler(ctx: Context) -> str:
        return ctx.cid

    cids = [await app.trigger_event("x") for _ in range(100)]
    assert len(set(cids)) == 100 and app.ctxs == {}
    gc.collect()
    assert not [obj for obj in gc.get_objects() if isinstance(obj, Context)]


async def test_named_context_lives_until_drop() -> None:
    app = App()

    @app.on_event("x")
    async def handler() -> None: ...

    await app.trigger_event("x", cid="session")
    ctx = app.get_ctx("session")
    assert ctx.is_alive and ctx.drop() and not ctx.is_alive
    assert ctx.drop() is False


async def test_context_dropped_while_its_event_runs_stays_usable_by_the_event() -> None:
    app = App()
    gate = asyncio.Event()

    @app.on_event("x")
    async def handler(event: Event) -> str:
        await gate.wait()
        return event.ctx.cid

    task = app.trigger_event("x", cid="s")
    await asyncio.sleep(0)
    app.get_ctx("s").drop()
    gc.collect()
    gate.set()
    assert await task == "s"


async def test_event_history_is_bounded() -> None:
    app = App(max_event_history=10)

    @app.on_event("x")
    async def handler() -> None: ...

    for _ in range(1000):
        await app.trigger_event("x", cid="long")
    history = app.get_ctx("long").events[app.get_route("handler")]
    assert 10 <= len(history) <= 13
    assert all(event.is_done for event in history)


async def test_context_subclass_and_free_attributes() -> None:
    class Session(Context):
        def greet(self) -> str:
            return f"hi {self.cid}"

    app = App()
    app.set_context_cls(Session)
    ctx: Any = app.new_ctx("u")
    ctx.user = "bob"  # 1.2 allowed free attributes on contexts
    assert isinstance(ctx, Session) and ctx.greet() == "hi u" and ctx.user == "bob"
    with pytest.raises(TypeError):
        app.set_context_cls(dict)  # type: ignore[arg-type]


async def test_anonymous_context_whose_event_matches_no_route_is_released() -> None:
    app = App()

    @app.on_event("known")
    async def known(ctx: Context) -> Any:
        return ctx.scope

    ctx = app.new_ctx(scope={"request": 1})
    with pytest.raises(EventNotFound):
        ctx.trigger_event("unknown")
    assert app.ctxs == {}
    # The seed's fallback pattern still works on the same context.
    assert await ctx.trigger_event("known") == {"request": 1}
    assert app.ctxs == {}


async def test_trigger_event_with_a_scope_makes_the_context_only_when_a_route_matches() -> None:
    app = App()

    @app.on_event("known")
    async def known(ctx: Context) -> Any:
        return ctx.scope

    with pytest.raises(EventNotFound):
        app.trigger_event("unknown", scope={"a": 1})
    assert app.ctxs == {}
    assert await app.trigger_event("known", scope={"a": 1}) == {"a": 1}
    assert await app.trigger_event("known", cid="named", scope={"b": 2}) == {"b": 2}


async def test_an_ended_event_keeps_its_path_params_state_and_result_not_its_data() -> None:
    app = App()
    seen_by_observer: list[Any] = []

    class Observer:
        def event_started(self, event: Event) -> None: ...

        def event_ended(self, event: Event) -> None:
            seen_by_observer.append((dict(event.data), dict(event.params)))

    app.add_event_observer(Observer())

    @app.on_event("frame/{n}")
    async def handler(n: Param, payload: Data) -> int:
        return len(payload)

    assert await app.trigger_event("frame/1", cid="conn", data={"payload": b"p" * 60_000}) == 60_000
    [event] = app.get_ctx("conn").events[app.get_route("handler")]
    assert (event.path, event.state, event.result) == ("frame/1", EventState.DONE, 60_000)
    assert dict(event.data) == {} and event.params == {"n": "1"}
    with pytest.raises(TypeError):
        event.data["late"] = 1  # type: ignore[index]  # released: read-only
    # Observers saw them before they were released.
    assert seen_by_observer == [({"payload": b"p" * 60_000}, {"n": "1"})]


async def test_event_history_is_bounded_in_path_bytes_too() -> None:
    app = App(max_event_history=100)
    app.max_event_history_bytes = 100_000

    @app.on_event("{line:path}")
    async def handler() -> None: ...

    for i in range(300):
        await app.trigger_event(f"{i}:" + "x" * 10_000, cid="long")
    history = app.get_ctx("long").events[app.get_route("handler")]
    assert sum(len(event.path) for event in history) <= 100_000
    assert history[-1].path.startswith("299:")  # the latest events are the ones kept
    assert len(history) >= 5
    # Short paths: the count bound applies, as before.
    for _ in range(300):
        await app.trigger_event("short", cid="short")
    assert 100 <= len(app.get_ctx("short").events[app.get_route("handler")]) <= 125


async def test_inputs_of_an_event_kept_running_are_released_when_both_it_and_its_task_ended() -> None:
    app = App()
    kept: list[Event] = []

    @app.on_event("early")
    async def done_early(event: Event, payload: Data) -> int:
        event.prevent_auto_done()
        event.done()  # ended, but its handler still runs and still reads its data
        await asyncio.sleep(0)
        return len(event.data["payload"]) + len(payload)

    @app.on_event("late")
    async def done_later(event: Event) -> None:
        event.prevent_auto_done()
        kept.append(event)

    assert await app.trigger_event("early", data={"payload": b"12345"}) == 10
    await app.trigger_event("late", cid="c", data={"payload": b"12345"})
    assert kept[0].data == {"payload": b"12345"}  # still running: still there
    kept[0].done()
    assert dict(kept[0].data) == {}


class CountedContext(Context):
    made = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountedContext.made += 1


async def test_trigger_event_makes_a_context_only_when_asked_for() -> None:
    app = App()
    app.set_context_cls(CountedContext)
    CountedContext.made = 0

    @app.on_event("plain:{n}")
    async def plain(n: Param) -> str:
        return n

    @app.on_event("asks:{n}")
    async def asks(n: Param, ctx: CountedContext) -> str:
        assert app.ctxs[ctx.cid] is ctx and ctx.events[app.get_route("asks")][0].path == f"asks:{n}"
        return ctx.cid

    assert [await app.trigger_event(f"plain:{n}") for n in range(10)] == [str(n) for n in range(10)]
    assert CountedContext.made == 0
    cids = [await app.trigger_event(f"asks:{n}", scope={"n": n}) for n in range(10)]
    assert CountedContext.made == 10 and len(set(cids)) == 10
    assert app.ctxs == {}


async def test_reading_ctxs_shows_the_context_of_every_running_event() -> None:
    app = App()
    release = asyncio.Event()

    @app.on_event("wait:{n}")
    async def wait(n: Param) -> None:
        await release.wait()

    tasks = [app.trigger_event(f"wait:{n}", scope={"n": n}) for n in range(3)]
    await asyncio.sleep(0)  # the handlers start (nothing has asked for a context)
    seen = sorted((ctx.scope["n"], [e.path for e in ctx.events[app.get_route("wait")]]) for ctx in app.ctxs.values())
    assert seen == [(0, ["wait:0"]), (1, ["wait:1"]), (2, ["wait:2"])]
    assert all(ctx.is_alive for ctx in app.ctxs.values())
    release.set()
    await asyncio.gather(*tasks)
    assert app.ctxs == {}


async def test_a_failure_is_logged_with_the_cid_of_a_context_made_for_it(caplog: pytest.LogCaptureFixture) -> None:
    app = App()

    @app.on_event("fail")
    async def fail() -> None:
        raise ValueError("boom")

    @app.on_event("quiet")
    async def quiet(ctx: Context) -> None:
        ctx.log_failures = False
        raise ValueError("hush")

    with pytest.raises(ValueError, match="boom"):
        await app.trigger_event("fail")
    with pytest.raises(ValueError, match="hush"):
        await app.trigger_event("quiet")
    failures = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(failures) == 1 and "boom" in failures[0].getMessage()
    assert failures[0].cid and failures[0].cid in failures[0].getMessage()  # type: ignore[attr-defined]
    assert app.ctxs == {}


def test_ctxs_read_from_another_thread_makes_no_context() -> None:
    app = App()
    handler_waits, read_elsewhere = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    @app.on_event("wait")
    async def wait() -> None:
        handler_waits.set()
        await asyncio.to_thread(read_elsewhere.wait, 10)
        seen["on the listener's loop"] = len(app.ctxs)  # made here
        app.stop()

    @app.startup
    async def begin() -> None:
        app.trigger_event("wait")

    runner = threading.Thread(target=app.run)
    runner.start()
    try:
        assert handler_waits.wait(10)
        seen["from another thread"] = dict(app.ctxs)
    finally:
        read_elsewhere.set()
        runner.join(10)
    assert not runner.is_alive()
    assert seen == {"from another thread": {}, "on the listener's loop": 1}
    assert app.ctxs == {}
