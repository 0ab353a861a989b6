"""Test an app without its transport: ``async with TestClient(app) as client:``.

:class:`TestClient` runs the app's startup and shutdown hooks around the test and lets it
trigger events and read their results; :class:`HTTPTestClient` runs an HTTP app for real and
sends it HTTP/1.1 requests over loopback; :class:`MemoryBroker` is a broker source with no
server behind it, to test retries and dead letters in milliseconds. :class:`BlockingTestClient` and
:class:`BlockingHTTPTestClient` do the same for plain ``def`` tests. The pytest plugin in
:mod:`tiny_listener.testing.pytest_plugin` adds fixtures for all four.
"""

from __future__ import annotations

from .blocking import BlockingHTTPTestClient as BlockingHTTPTestClient
from .blocking import BlockingTestClient as BlockingTestClient
from .client import TestClient as TestClient
from .http import HTTPResponse as HTTPResponse
from .http import HTTPTestClient as HTTPTestClient
from .memory import DeadLetterRecord as DeadLetterRecord
from .memory import Delivery as Delivery
from .memory import MemoryBroker as MemoryBroker
from .memory import Outcome as Outcome
from .recorder import EventRecord as EventRecord
from .recorder import EventRecorder as EventRecorder

__all__ = (
    "BlockingHTTPTestClient",
    "BlockingTestClient",
    "DeadLetterRecord",
    "Delivery",
    "EventRecord",
    "EventRecorder",
    "HTTPResponse",
    "HTTPTestClient",
    "MemoryBroker",
    "Outcome",
    "TestClient",
)
