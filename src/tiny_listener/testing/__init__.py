"""Test an app without its transport: ``async with TestClient(app) as client:``.

:class:`TestClient` runs the app's startup and shutdown hooks around the test and lets it
trigger events and read their results; :class:`BlockingTestClient` does the same for plain
``def`` tests. The pytest plugin in :mod:`tiny_listener.testing.pytest_plugin` adds the
``tl_client`` and ``tl_async_client`` fixtures.
"""

from __future__ import annotations

from .blocking import BlockingTestClient as BlockingTestClient
from .client import TestClient as TestClient
from .recorder import EventRecord as EventRecord
from .recorder import EventRecorder as EventRecorder

__all__ = ("BlockingTestClient", "EventRecord", "EventRecorder", "TestClient")
