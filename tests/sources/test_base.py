"""Sources hosted by a listener: one route table, one lifecycle, states for health checks."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from tiny_listener import Data, Listener, ListenerError, Param
from tiny_listener.sources import Source, SourceNotAttached, SourceState


class Ticker(Source):
    """Triggers ``tick:<n>`` for each n it is fed, records what happens to it."""

    kind = "test"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self._feed: asyncio.Queue[int] | None = None
        self.steps: List[str] = []

    @property
    def feed(self) -> asyncio.Queue[int]:
        # Made in the running loop: Python 3.9's Queue() would make (and leak) a loop of its own.
        if self._feed is None:
            self._feed = asyncio.Queue()
        return self._feed

    async def serve(self) -> None:
        self.set_state(SourceState.READY)
        try:
            while True:
                n = await self.feed.get()
                self.listener.trigger_event(f"tick:{n}", data={"source": self.name})
        finally:
            self.steps.append(f"intake stopped ({self.state.value})")

    async def close(self) -> None:
        self.steps.append("closed")


async def test_two_sources_share_one_route_table_and_lifecycle() -> None:
    app: Listener[Any] = Listener()
    left, right = app.add_source(Ticker("left")), app.add_source(Ticker("right"))
    seen: List[Any] = []
    release = asyncio.Event()
    both_seen = asyncio.Event()

    @app.on_event("tick:{n:int}")
    async def on_tick(n: Param, source: Data) -> None:
        seen.append((source, n))
        if len(seen) == 2:
            both_seen.set()
        if n == 2:
            await release.wait()
            left.steps.append("slow event done")

    main = asyncio.ensure_future(app.main())
    await left.wait_ready()
    await right.wait_ready()
    assert app.ready
    assert app.health() == {
        "status": "ready",
        "sources": {"left": {"kind": "test", "state": "ready"}, "right": {"kind": "test", "state": "ready"}},
    }
    left.feed.put_nowait(1)
    right.feed.put_nowait(2)
    await both_seen.wait()
    assert sorted(seen) == [("left", 1), ("right", 2)]

    app.stop()
    await left.wait_state(SourceState.DRAINING)
    assert not app.ready
    # Intake stopped, the slow event still runs, nothing is closed yet.
    await asyncio.sleep(0)
    assert left.steps == ["intake stopped (draining)"]
    release.set()
    await main
    assert left.steps == ["intake stopped (draining)", "slow event done", "closed"]
    assert right.steps == ["intake stopped (draining)", "closed"]
    assert left.state is right.state is SourceState.STOPPED


async def test_a_failing_source_stops_the_listener_with_its_error() -> None:
    class Broken(Source):
        async def serve(self) -> None:
            raise OSError("port taken")

    app: Listener[Any] = Listener()
    app.add_source(Broken())
    with pytest.raises(OSError, match="port taken"):
        await asyncio.wait_for(app.main(), 10)


def test_source_names_are_unique_per_listener() -> None:
    app: Listener[Any] = Listener()
    app.add_source(Ticker("a"))
    with pytest.raises(ListenerError, match="already hosts a source named 'a'"):
        app.add_source(Ticker("a"))


def test_a_source_is_hosted_by_one_listener() -> None:
    source = Ticker()
    with pytest.raises(SourceNotAttached):
        _ = source.listener
    Listener().add_source(source)
    with pytest.raises(ListenerError, match="already attached"):
        Listener().add_source(source)


async def test_listen_still_runs_beside_sources() -> None:
    ran = asyncio.Event()

    class App(Listener[Any]):
        async def listen(self) -> None:
            ran.set()

    app = App()
    ticker = app.add_source(Ticker())
    main = asyncio.ensure_future(app.main())
    await ran.wait()
    await ticker.wait_ready()
    with pytest.raises(ListenerError, match="while it runs"):
        app.add_source(Ticker("late"))
    app.stop()
    await main


async def test_a_listener_without_listen_or_sources_says_what_it_needs() -> None:
    with pytest.raises(NotImplementedError, match="add_source"):
        await asyncio.wait_for(Listener().main(), 10)
