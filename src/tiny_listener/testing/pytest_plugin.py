"""pytest plugin (entry point ``pytest11: tiny_listener``): fixtures that run an app for a test.

Each fixture is a factory: call it with the app (and the client's options) to get a started
client; every client it started is shut down after the test, the latest first.

- ``tl_client(app)`` -> :class:`BlockingTestClient` and ``tl_http_client(app)`` ->
  :class:`BlockingHTTPTestClient`, for plain ``def`` tests. They need no async plugin: the app
  runs on a loop in a thread the client owns.
- ``await tl_async_client(app)`` -> :class:`TestClient` and ``await tl_async_http_client(app)``
  -> :class:`HTTPTestClient`, for ``async def`` tests run by pytest-asyncio (auto or strict
  mode), on the test's own loop. Without pytest-asyncio installed they fail with a hint.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Type, TypeVar

import pytest

from ..listener import Listener
from .blocking import BlockingHTTPTestClient, BlockingTestClient
from .client import TestClient
from .http import HTTPTestClient

B = TypeVar("B", BlockingTestClient, BlockingHTTPTestClient)
A = TypeVar("A", TestClient, HTTPTestClient)

# The started clients are entered on an exit stack: at teardown they are all shut down, the
# latest first, even if shutting one down fails (its error is raised after the others).


def _blocking_clients(kind: Type[B]) -> Iterator[Callable[..., B]]:
    with contextlib.ExitStack() as started:

        def start(app: Listener[Any], **options: Any) -> B:
            return started.enter_context(kind(app, **options))

        yield start


@pytest.fixture
def tl_client() -> Iterator[Callable[..., BlockingTestClient]]:
    """``client = tl_client(app, **options)``: a started :class:`BlockingTestClient`."""
    yield from _blocking_clients(BlockingTestClient)


@pytest.fixture
def tl_http_client() -> Iterator[Callable[..., BlockingHTTPTestClient]]:
    """``http = tl_http_client(app, **options)``: a started :class:`BlockingHTTPTestClient`."""
    yield from _blocking_clients(BlockingHTTPTestClient)


async def _async_clients(kind: Type[A]) -> AsyncIterator[Callable[..., Awaitable[A]]]:
    async with contextlib.AsyncExitStack() as started:

        async def start(app: Listener[Any], **options: Any) -> A:
            return await started.enter_async_context(kind(app, **options))

        yield start


async def _tl_async_client() -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """``client = await tl_async_client(app, **options)``: a started :class:`TestClient`."""
    async for start in _async_clients(TestClient):
        yield start


async def _tl_async_http_client() -> AsyncIterator[Callable[..., Awaitable[HTTPTestClient]]]:
    """``http = await tl_async_http_client(app, **options)``: a started :class:`HTTPTestClient`."""
    async for start in _async_clients(HTTPTestClient):
        yield start


def _missing_pytest_asyncio() -> None:
    pytest.fail("this fixture needs pytest-asyncio (pip install pytest-asyncio); plain `def` tests can use tl_client")


def _async_fixture(fn: Callable[..., Any], name: str) -> Any:
    """Return ``fn`` as fixture ``name`` run by pytest-asyncio, which owns the loop of async
    tests (in auto and strict mode alike), or a fixture failing with a hint without it."""
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(name=name)(_missing_pytest_asyncio)
    return pytest_asyncio.fixture(name=name)(fn)


tl_async_client = _async_fixture(_tl_async_client, "tl_async_client")
tl_async_http_client = _async_fixture(_tl_async_http_client, "tl_async_http_client")
