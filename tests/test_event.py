from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tiny_listener import Event, EventNotFound, EventState, EventStateError, Listener, Param


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        await self.wait_for_shutdown()


async def spin(times: int = 5) -> None:
    """Let the loop run a few iterations: enough for callbacks, far too few for polling."""
    for _ in range(times):
        await asyncio.sleep(0)


async def test_event_lifecycle_done() -> None:
    app = App()
    seen: list[EventState] = []

    @app.on_event("x")
    async def handler(event: Event) -> str:
        seen.append(event.state)
        assert event.running and not event.is_done
        return "ok"

    task = app.trigger_event("x")
    event = app.ctxs[next(iter(app.ctxs))].events[app.get_route("handler")][0]
    assert event.state is EventState.PENDING
    assert await task == "ok"
    assert seen == [EventState.RUNNING]
    assert event.state is EventState.DONE and event.is_done and event.result == "ok"


async def test_failed_event_ends_failed_with_its_error() -> None:
    app = App()
    events: list[Event] = []

    @app.on_event("x")
    async def handler(event: Event) -> None:
        events.append(event)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await app.trigger_event("x")
    assert events[0].state is EventState.FAILED
    assert isinstance(events[0].error, ValueError)


async def test_cancelled_event_ends_cancelled() -> None:
    app = App()
    started = asyncio.Event()
    events: list[Event] = []

    @app.on_event("x")
    async def handler(event: Event) -> None:
        events.append(event)
        started.set()
        await asyncio.Event().wait()

    task = app.trigger_event("x")
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events[0].state is EventState.CANCELLED


def test_event_cancelled_before_it_starts_is_ended_and_its_context_released_at_shutdown() -> None:
    seen: list[Any] = []

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            task = self.trigger_event("x")
            (ctx,) = self.ctxs.values()
            seen.extend(ctx.events[self.get_route("handler")])
            task.cancel()  # before its first step: the handler never runs
            self.stop()

    app = Server()

    @app.on_event("x")
    async def handler() -> None:
        seen.append("ran")

    app.run()
    assert len(seen) == 1 and seen[0].state is EventState.CANCELLED
    assert app.ctxs == {}


async def test_event_cancelled_before_it_starts_is_ended_while_the_listener_runs() -> None:
    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            await self.wait_for_shutdown()

    app = Server()
    waiters: list[Any] = []
    cancelled = asyncio.Event()

    @app.on_event("x")
    async def handler() -> None: ...

    @app.startup
    async def cancel_one_early() -> None:
        task = app.trigger_event("x")
        (ctx,) = app.ctxs.values()
        (event,) = ctx.events[app.get_route("handler")]
        task.cancel()
        waiters.append((event, ctx))
        cancelled.set()

    runner = asyncio.ensure_future(app.main())
    await asyncio.wait_for(cancelled.wait(), timeout=10)
    event, ctx = waiters[0]
    await asyncio.wait_for(event.wait_until_done(), timeout=10)  # the janitor ends it
    assert event.state is EventState.CANCELLED and not ctx.is_alive
    await app.graceful_shutdown()
    await asyncio.wait_for(runner, timeout=10)


async def test_prevent_auto_done_keeps_event_running_until_done() -> None:
    app = App()
    kept: list[Event] = []

    @app.on_event("x")
    async def handler(event: Event) -> str:
        event.prevent_auto_done()
        kept.append(event)
        return "handled"

    assert await app.trigger_event("x", cid="c") == "handled"
    event = kept[0]
    assert not event.is_done and event.state is EventState.RUNNING
    waiter = asyncio.ensure_future(event.wait_until_done())
    await spin()
    assert not waiter.done()
    event.done()
    await spin()
    assert waiter.done() and event.state is EventState.DONE
    event.done()  # idempotent, as in 1.2


async def test_done_on_an_event_built_by_hand_ends_it_and_wakes_its_waiters() -> None:
    app = App()

    @app.on_event("x")
    async def handler() -> None: ...

    ctx = app.new_ctx()  # anonymous: released once no dispatched event of it runs
    event = ctx.new_event(app.get_route("handler"), {})
    waiter = asyncio.ensure_future(event.wait_until_done())
    await spin()
    event.done()
    await asyncio.wait_for(waiter, timeout=10)
    assert event.state is EventState.DONE and event.is_done
    event.done()  # idempotent
    # The hand-built event was never counted as running: the context's own events still are.
    assert await ctx.trigger_event("x") is None
    assert not ctx.is_alive


async def test_done_before_a_dispatched_event_starts_ends_it_without_running_the_handler() -> None:
    app = App()
    ran: list[str] = []

    @app.on_event("x")
    async def handler() -> None:
        ran.append("x")

    task = app.trigger_event("x")
    (ctx,) = app.ctxs.values()
    (event,) = ctx.events[app.get_route("handler")]
    event.done()
    assert await task is None
    assert ran == [] and event.state is EventState.DONE
    assert app.ctxs == {}  # its context was released as after any event


def test_an_event_marked_done_then_cancelled_before_it_starts_stays_done_and_is_released() -> None:
    seen: list[Any] = []

    class Server(Listener):  # type: ignore[type-arg]
        async def listen(self) -> None:
            task = self.trigger_event("x")
            (ctx,) = self.ctxs.values()
            (event,) = ctx.events[self.get_route("handler")]
            event.done()
            task.cancel()  # before its first step: the shutdown finds the task and settles it
            seen.append(event)
            self.stop()

    app = Server()

    @app.on_event("x")
    async def handler() -> None:
        seen.append("ran")

    app.run()
    assert len(seen) == 1 and seen[0].state is EventState.DONE
    assert app.ctxs == {}


def test_ended_states_are_final_and_an_illegal_move_names_both_states() -> None:
    from tiny_listener.lifecycle import ENDED, TRANSITIONS

    assert all(not TRANSITIONS[state] for state in ENDED)
    error = EventStateError("x", EventState.DONE, EventState.RUNNING)
    assert str(error) == "can't move event 'x' from done to running"


async def test_calling_an_event_runs_its_handler() -> None:
    app = App()

    @app.on_event("add/{a:int}")
    async def add(a: Param, event: Event) -> Any:
        return a + event.data["b"]

    ctx = app.new_ctx("c")
    event = ctx.new_event(app.get_route("add"), {"b": 1})
    assert await event({"a": 1}) == 2 and event.result == 2


async def test_wait_event_done_wakes_without_polling_when_n_events_end() -> None:
    app = App()
    gate = asyncio.Event()

    @app.on_event("work/{n:int}")
    async def work(n: Param) -> Any:
        await gate.wait()
        return "done"

    @app.on_event("watch")
    async def watch(event: Event) -> Any:
        return await event.wait_event_done("work", n=2, timeout=5)

    watcher = app.trigger_event("watch", cid="c")
    first = app.trigger_event("work/1", cid="c")
    second = app.trigger_event("work/2", cid="c")
    await spin()
    assert not watcher.done()
    gate.set()
    await asyncio.gather(first, second)
    await spin()  # a handful of loop iterations, where 1.2 slept 0.5 s between checks
    assert watcher.done()
    assert watcher.result() == ["done", "done"]


async def test_wait_event_done_counts_events_that_already_ended() -> None:
    app = App()

    @app.on_event("work")
    async def work() -> int:
        return 7

    @app.on_event("watch")
    async def watch(event: Event) -> Any:
        return await event.wait_event_done("work", n=1)

    await app.trigger_event("work", cid="c")
    assert await app.trigger_event("watch", cid="c") == [7]


async def test_wait_event_done_times_out() -> None:
    app = App()

    @app.on_event("work")
    async def work() -> None: ...

    @app.on_event("watch")
    async def watch(event: Event) -> Any:
        return await event.wait_event_done("work", n=1, timeout=0.01)

    with pytest.raises(asyncio.TimeoutError):
        await app.trigger_event("watch", cid="c")


async def test_wait_event_done_unknown_handler_and_too_many() -> None:
    app = App(max_event_history=3)

    @app.on_event("watch/{name}")
    async def watch(event: Event, name: Param) -> Any:
        return await event.wait_event_done(name, n=int(event.data.get("n", 1)))

    with pytest.raises(EventNotFound):
        await app.trigger_event("watch/missing")
    with pytest.raises(ValueError, match="keeps only the latest 3"):
        await app.trigger_event("watch/watch", data={"n": 4})
