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

from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, List, Protocol, Type, TypeVar

import pytest

from ..listener import Listener
from .blocking import BlockingHTTPTestClient, BlockingTestClient
from .client import TestClient
from .http import HTTPTestClient


class _BlockingClient(Protocol):
    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: Any) -> None: ...


class _AsyncClient(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> None: ...


B = TypeVar("B", bound=_BlockingClient)
A = TypeVar("A", bound=_AsyncClient)


def _blocking_clients(kind: Type[B]) -> Iterator[Callable[..., B]]:
    clients: List[B] = []

    def start(app: Listener[Any], **options: Any) -> B:
        client = kind(app, **options)  # type: ignore[call-arg]
        client.__enter__()
        clients.append(client)
        return client

    try:
        yield start
    finally:
        while clients:
            clients.pop().__exit__(None, None, None)


@pytest.fixture
def tl_client() -> Iterator[Callable[..., BlockingTestClient]]:
    """``client = tl_client(app, **options)``: a started :class:`BlockingTestClient`."""
    yield from _blocking_clients(BlockingTestClient)


@pytest.fixture
def tl_http_client() -> Iterator[Callable[..., BlockingHTTPTestClient]]:
    """``http = tl_http_client(app, **options)``: a started :class:`BlockingHTTPTestClient`."""
    yield from _blocking_clients(BlockingHTTPTestClient)


async def _async_clients(kind: Type[A]) -> AsyncIterator[Callable[..., Awaitable[A]]]:
    clients: List[A] = []

    async def start(app: Listener[Any], **options: Any) -> A:
        client = kind(app, **options)  # type: ignore[call-arg]
        await client.__aenter__()
        clients.append(client)
        return client

    try:
        yield start
    finally:
        while clients:
            await clients.pop().__aexit__(None, None, None)


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
