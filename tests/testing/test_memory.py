"""MemoryBroker as a test tool: running its app, its settings. Its delivery flow is tested in
tests/sources/test_broker.py."""

from __future__ import annotations

from typing import Any

import pytest

from tiny_listener import Listener
from tiny_listener.testing import MemoryBroker, Outcome


async def test_entering_the_broker_raises_what_the_app_failed_to_start_with() -> None:
    app: Listener[Any] = Listener()
    broker = app.add_source(MemoryBroker())
    database_up = False

    @app.startup
    async def connect_to_the_database() -> None:
        if not database_up:
            raise ConnectionRefusedError("database is down")

    with pytest.raises(ConnectionRefusedError, match="database is down"):
        async with broker:
            pass
    # The app is put back as it was: it runs again once the startup hook does.
    database_up = True
    async with broker:
        assert broker.connected


async def test_messages_published_before_the_app_runs_wait_for_it() -> None:
    app: Listener[Any] = Listener()
    broker = app.add_source(MemoryBroker())

    @app.on_event("early")
    async def early() -> None:
        pass

    delivery = await broker.publish("early")
    assert delivery.outcome is None
    async with broker:
        await delivery.settled()
    assert delivery.outcome is Outcome.ACKED


def test_time_scale_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="time_scale must be 0 or more"):
        MemoryBroker(time_scale=-1)
