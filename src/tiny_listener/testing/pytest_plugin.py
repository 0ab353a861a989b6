"""pytest plugin (entry point ``pytest11: tiny_listener``): fixtures that run an app for a test.

- ``tl_client``: for plain ``def`` tests. ``client = tl_client(app)`` returns a started
  :class:`BlockingTestClient`; it is shut down after the test. Needs no async plugin.
- ``tl_async_client``: for ``async def`` tests run by pytest-asyncio (auto or strict mode).
  ``client = await tl_async_client(app)`` returns a started :class:`TestClient`, shut down
  after the test on the test's own event loop. Without pytest-asyncio it fails with a hint.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, List

import pytest

from ..listener import Listener
from .blocking import BlockingTestClient
from .client import TestClient

BlockingClientFactory = Callable[..., BlockingTestClient]
AsyncClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def tl_client() -> Iterator[BlockingClientFactory]:
    """Return ``factory(app, **options)`` that starts a :class:`BlockingTestClient`; every
    client it started is shut down after the test, the latest first."""
    clients: List[BlockingTestClient] = []

    def start(app: Listener[Any], **options: Any) -> BlockingTestClient:
        client = BlockingTestClient(app, **options)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    _close_all(clients)


def _close_all(clients: List[BlockingTestClient]) -> None:
    while clients:
        clients.pop().__exit__(None, None, None)


async def _async_clients() -> AsyncIterator[AsyncClientFactory]:
    """Return ``await factory(app, **options)`` that starts a :class:`TestClient` on the
    test's loop; every client it started is shut down after the test, the latest first."""
    clients: List[TestClient] = []

    async def start(app: Listener[Any], **options: Any) -> TestClient:
        client = TestClient(app, **options)
        await client.__aenter__()
        clients.append(client)
        return client

    yield start
    while clients:
        await clients.pop().__aexit__(None, None, None)


def _missing_pytest_asyncio() -> None:
    pytest.fail("the tl_async_client fixture needs pytest-asyncio (pip install pytest-asyncio); use tl_client")


def _async_client_fixture() -> Any:
    """Return the ``tl_async_client`` fixture: run by pytest-asyncio, which owns the loop of
    async tests (in auto and strict mode alike), or failing with a hint when it is missing."""
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(name="tl_async_client")(_missing_pytest_asyncio)
    return pytest_asyncio.fixture(name="tl_async_client")(_async_clients)


tl_async_client = _async_client_fixture()
