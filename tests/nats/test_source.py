"""NATSListener as a listener hosting one NATSSource: URLs checked when it is made, settings
shared with its source, and the delivery log lines of the one broker flow."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List

import pytest

from tests.broker_listeners import running
from tests.log_watch import watching_log
from tiny_listener import Event
from tiny_listener.nats import NATSListener, NATSSource
from tiny_listener.sources import SourceState

from .conftest import Streams


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://127.0.0.1:4222", "has scheme 'http'"),
        ("127.0.0.1:4222", "has no scheme"),
        ("nats://127.0.0.1:42x2", "malformed NATS URL"),
        ("nats://", "names no host"),
    ],
)
def test_a_url_that_is_not_a_nats_url_is_refused_when_the_listener_is_made(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="expected nats://host") as raised:
        NATSListener(url, stream="S", durable="d")
    assert complaint in str(raised.value)


def test_the_password_of_a_refused_url_is_not_shown() -> None:
    with pytest.raises(ValueError) as raised:
        NATSListener("http://bob:secret@127.0.0.1", stream="S", durable="d")
    assert "secret" not in str(raised.value) and "bob:***@" in str(raised.value)


def test_the_listener_hosts_one_source_and_shares_its_settings() -> None:
    app: NATSListener[Any] = NATSListener(stream="ORDERS", durable="billing", max_in_flight=4, dead_letter=False)
    assert app.sources == (app.source,) and isinstance(app.source, NATSSource)
    assert (app.source.max_in_flight, app.max_in_flight) == (4, 4)
    app.max_in_flight = 7
    assert app.source.max_in_flight == 7
    assert app.dead_letter_subject is None
    assert NATSListener(stream="ORDERS", durable="billing").dead_letter_subject == "deadletter.ORDERS"
    assert app.health() == {
        "status": "not ready",
        "sources": {"nats": {"kind": "nats", "state": "stopped", "url": "nats://127.0.0.1:4222", "in_flight": 0}},
    }


async def test_retries_are_one_warning_each_and_the_last_failure_one_error_with_its_traceback(
    streams: Streams, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = streams.app(max_retries=2, retry_backoff=0.01)
    path = f"{streams.prefix}.always"
    calls: List[int] = []

    @app.on_event(path)
    async def always(event: Event) -> None:
        calls.append(event.ctx.scope["attempt"])
        raise ValueError("broken")

    with watching_log("tiny_listener.nats", "dead-lettered") as dead_lettered:
        async with running(app):
            assert app.source.state is SourceState.READY
            await app.publish(path, {})
            await asyncio.wait_for(dead_lettered.wait(), 20)
    assert calls == [1, 2, 3]
    about_the_message = [r for r in caplog.records if path in r.getMessage() and r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname, r.exc_info is not None) for r in about_the_message] == [
        ("tiny_listener.nats", "WARNING", False),
        ("tiny_listener.nats", "WARNING", False),
        ("tiny_listener.nats", "ERROR", True),
    ]
    first, _, last = about_the_message
    assert "failed on attempt 1 of 3 (ValueError('broken')); retrying in 0.01s" in first.getMessage()
    assert "failed in handler always on attempt 3 of 3, the last" in last.getMessage()
    assert f"dead-lettered to 'deadletter.{app.stream}' (handler-failed)" in last.getMessage()
    assert (last.event_path, last.attempt, last.reason, last.broker) == (path, 3, "handler-failed", "NATS")  # type: ignore[attr-defined]
