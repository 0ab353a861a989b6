"""Blocking clients for plain (non-async) test functions.

The app runs on an event loop in a background thread that the client owns; each call blocks
until the app has answered. No event loop, fixture plugin or ``async def`` is needed in the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from types import TracebackType
from typing import Any, Awaitable, Callable, Coroutine, List, Type, TypeVar

from .._types import EventData, Scope
from ..listener import Listener
from .client import TestClient
from .http import HeaderItems, HTTPResponse, HTTPTestClient
from .recorder import EventRecord

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread: :meth:`run` blocks until a coroutine ran
    there, for at most ``call_timeout`` seconds."""

    def __init__(self, name: str, call_timeout: float) -> None:
        self.name = name
        self.call_timeout = call_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Return what ``coro`` returns (or raise its error).

        Raises ``RuntimeError`` if the thread is not started, ``TimeoutError`` (after
        cancelling ``coro``) if it takes longer than ``call_timeout``.
        """
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not running: use it in a `with` block")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.call_timeout)
        except concurrent.futures.TimeoutError:  # TimeoutError itself only from Python 3.11
            future.cancel()
            raise TimeoutError(f"the app did not answer within {self.call_timeout}s") from None

    def stop(self) -> None:
        """Stop the loop, join the thread and close the loop."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        try:
            # Whatever a timed-out call left behind ends here, not as "Task was destroyed".
            leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


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
        self._thread = LoopThread(f"BlockingTestClient({app!r})", call_timeout)

    @property
    def app(self) -> Listener[Any]:
        return self.client.app

    @property
    def events(self) -> List[EventRecord]:
        """Every event the app handled while the client ran, in the order they ended."""
        return self.client.events

    def __enter__(self) -> BlockingTestClient:
        """Start the loop thread and run the startup hooks; raise what a failing one raised."""
        _enter(self._thread, self.client.__aenter__())
        return self

    def __exit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Shut the app down as production does, then stop and close the loop."""
        _exit(self._thread, self.client.__aexit__(None, None, None))

    def trigger(
        self,
        path: str,
        *,
        data: EventData | None = None,
        cid: str | None = None,
        timeout: float | None = None,
        scope: Scope | None = None,
    ) -> Any:
        """Run the event and return its handler's result; see :meth:`TestClient.trigger`.

        Raises the handler's error, :class:`~tiny_listener.EventNotFound`, or
        ``TimeoutError`` if the app does not answer within ``call_timeout``.
        """
        return self._thread.run(self.client.trigger(path, data=data, cid=cid, timeout=timeout, scope=scope))

    def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no event is running; see :meth:`TestClient.wait_idle`."""
        self._thread.run(self.client.wait_idle(timeout))

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``await fn()`` on the app's loop and return its result (or raise its error)."""
        return self._thread.run(_await(fn))


class BlockingHTTPTestClient:
    """``with BlockingHTTPTestClient(app) as http: assert http.get("/user/bob").text == ...``:
    the :class:`~tiny_listener.testing.http.HTTPTestClient` with blocking methods."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        app: Listener[Any],
        *,
        host: str = "127.0.0.1",
        shutdown_timeout: float | None = None,
        call_timeout: float = 60.0,
    ) -> None:
        self.client = HTTPTestClient(app, host=host, shutdown_timeout=shutdown_timeout, timeout=call_timeout)
        self._thread = LoopThread(f"BlockingHTTPTestClient({app!r})", call_timeout)

    @property
    def app(self) -> Listener[Any]:
        return self.client.app

    @property
    def events(self) -> List[EventRecord]:
        """Every event the app handled while the client ran, in the order they ended."""
        return self.client.events

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def __enter__(self) -> BlockingHTTPTestClient:
        """Start the app and wait until it serves; see :meth:`HTTPTestClient.__aenter__`."""
        _enter(self._thread, self.client.__aenter__())
        return self

    def __exit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Shut the app down, then stop and close the loop."""
        _exit(self._thread, self.client.__aexit__(None, None, None))

    def request(
        self, method: str, path: str, *, headers: HeaderItems | None = None, body: bytes = b"", json: Any = None
    ) -> HTTPResponse:
        """Send one request and return the whole response; see :meth:`HTTPTestClient.request`."""
        return self._thread.run(self.client.request(method, path, headers=headers, body=body, json=json))

    def get(self, path: str, *, headers: HeaderItems | None = None) -> HTTPResponse:
        return self.request("GET", path, headers=headers)

    def head(self, path: str, *, headers: HeaderItems | None = None) -> HTTPResponse:
        return self.request("HEAD", path, headers=headers)

    def post(
        self, path: str, *, headers: HeaderItems | None = None, body: bytes = b"", json: Any = None
    ) -> HTTPResponse:
        return self.request("POST", path, headers=headers, body=body, json=json)

    def put(
        self, path: str, *, headers: HeaderItems | None = None, body: bytes = b"", json: Any = None
    ) -> HTTPResponse:
        return self.request("PUT", path, headers=headers, body=body, json=json)

    def delete(self, path: str, *, headers: HeaderItems | None = None) -> HTTPResponse:
        return self.request("DELETE", path, headers=headers)


async def _await(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def _enter(thread: LoopThread, enter: Coroutine[Any, Any, Any]) -> None:
    thread.start()
    try:
        thread.run(enter)
    except BaseException:
        thread.stop()
        raise


def _exit(thread: LoopThread, exit_: Coroutine[Any, Any, Any]) -> None:
    try:
        thread.run(exit_)
    finally:
        thread.stop()
