"""EventLogObserver and JsonFormatter, used directly."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from tiny_listener import Listener
from tiny_listener.devtools.logs import EVENT_LOGGER, EventLogObserver, JsonFormatter, log_events
from tiny_listener.testing import TestClient


class App(Listener):  # type: ignore[type-arg]
    async def listen(self) -> None:
        raise AssertionError("not run under a TestClient")


def make_app() -> App:
    app = App()

    @app.on_event("user:{name}")
    async def greet(name: str = "") -> str:
        return "hi"

    return app


async def test_log_events_adds_an_observer_only_when_debug_is_enabled(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    caplog.set_level(logging.INFO, logger=EVENT_LOGGER)
    assert log_events(app) is None
    caplog.set_level(logging.DEBUG, logger=EVENT_LOGGER)
    observer = log_events(app)
    assert isinstance(observer, EventLogObserver)
    async with TestClient(app) as client:
        await client.trigger("user:bob", cid="c")
    (record,) = [r for r in caplog.records if r.name == EVENT_LOGGER]
    assert record.levelno == logging.DEBUG
    fields = [getattr(record, name) for name in ("event_path", "handler", "cid", "outcome")]
    assert fields == ["user:bob", "greet", "c", "done"]


async def test_observer_at_info_level(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    caplog.set_level(logging.INFO, logger=EVENT_LOGGER)
    app.add_event_observer(EventLogObserver(level=logging.INFO))
    async with TestClient(app) as client:
        await client.trigger("user:ann")
    assert [r.getMessage().split(" cid=")[0] for r in caplog.records] == ["event 'user:ann' handler=greet"]


def test_json_formatter_keeps_extra_fields_and_the_traceback() -> None:
    logger = logging.getLogger("test.json")
    try:
        raise KeyError("k")
    except KeyError:
        record = logger.makeRecord(
            "test.json",
            logging.ERROR,
            __file__,
            1,
            "failed %s",
            ("x",),
            exc_info=sys.exc_info(),
            extra={"cid": "c1", "n": {1}},
        )
    payload = json.loads(JsonFormatter().format(record))
    assert payload["message"] == "failed x" and payload["level"] == "ERROR" and payload["logger"] == "test.json"
    assert payload["cid"] == "c1" and payload["n"] == "{1}"  # not JSON: its repr
    assert "KeyError: 'k'" in payload["exc_info"]
    assert "msg" not in payload and "args" not in payload
