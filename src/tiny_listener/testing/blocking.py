"""``BlockingTestClient``: the :class:`TestClient` for plain (non-async) test functions.

The app runs on an event loop in a background thread that the client owns; each call blocks
until the app has answered. No event loop, fixture plugin or ``async def`` is needed in the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from types import TracebackType
from typing import Any, Awaitable, Callable, Coroutine, List, Type, TypeVar

from .._types import EventData
from ..listener import Listener
from .client import TestClient
from .recorder import EventRecord

T = TypeVar("T")


class BlockingTestClient:
    """``with BlockingTestClient(app) as client: client.trigger("GET:/user/bob")``.

    Same behaviour as :class:`TestClient` (startup hooks on enter, shutdown on exit, every
    event recorded in :attr:`events`), with blocking methods. ``call_timeout`` bounds every
    call, so a hung handler fails the test instead of hanging it.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self, app: Listener[Any], *, shutdown_timeout: float | None = None, call_timeout: float = 60.0
    ) -> None:
        self.client = TestClient(app, shutdown_timeout=shutdown_timeout)
        self.call_timeout = call_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def app(self) -> Listener[Any]:
        return self.client.app

    @property
    def events(self) -> List[EventRecord]:
        """Every event the app handled while the client ran, in the order they ended."""
        return self.client.events

    def __enter__(self) -> BlockingTestClient:
        """Start the loop thread and run the startup hooks; raise what a failing one raised."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"BlockingTestClient({self.app!r})", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self.client.__aenter__())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Shut the app down as production does, then stop and close the loop."""
        if self._loop is None:
            return
        try:
            self._run(self.client.__aexit__(None, None, None))
        finally:
            self._stop_loop()

    def trigger(
        self, path: str, *, data: EventData | None = None, cid: str | None = None, timeout: float | None = None
    ) -> Any:
        """Run the event and return its handler's result; see :meth:`TestClient.trigger`.

        Raises the handler's error, :class:`~tiny_listener.EventNotFound`, or
        ``TimeoutError`` if the app does not answer within ``call_timeout``.
        """
        return self._run(self.client.trigger(path, data=data, cid=cid, timeout=timeout))

    def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no event is running; see :meth:`TestClient.wait_idle`."""
        self._run(self.client.wait_idle(timeout))

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``await fn()`` on the app's loop and return its result (or raise its error)."""

        async def call() -> T:
            return await fn()

        return self._run(call())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the BlockingTestClient is not running: use `with BlockingTestClient(app) as client:`")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.call_timeout)
        except concurrent.futures.TimeoutError:  # TimeoutError itself only from Python 3.11
            future.cancel()
            raise TimeoutError(f"the app did not answer within {self.call_timeout}s") from None

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
