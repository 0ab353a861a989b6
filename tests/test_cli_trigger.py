"""``tiny-listener trigger MODULE:ATTR PATH --data JSON``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .cli_helpers import run_cli, write_module

APP = """
    from tiny_listener import Data, Event, Listener, Param


    class App(Listener):
        async def listen(self):
            raise AssertionError("trigger must not run listen()")


    app = App()


    @app.startup
    async def connect():
        print("startup", flush=True)


    @app.shutdown
    async def disconnect():
        print("shutdown", flush=True)


    @app.on_event("order:{id:int}:created")
    async def on_order(id: Param, event: Event, qty: Data = 1):
        return {"id": id, "qty": qty, "cid": event.ctx.cid}


    @app.on_event("object")
    async def not_json():
        return object()


    @app.on_event("boom")
    async def boom():
        raise ValueError("out of stock")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "shop", APP)
    return tmp_path


def test_trigger_runs_startup_event_shutdown_and_prints_the_result_as_json(app_dir: Path) -> None:
    result = run_cli(
        "trigger", "--app-dir", str(app_dir), "shop:app", "order:7:created", "--data", '{"qty": 3}', "--cid", "c-1"
    )
    assert result.returncode == 0, result.stderr
    startup, shutdown, printed = result.stdout.splitlines()
    assert (startup, shutdown) == ("startup", "shutdown")
    assert json.loads(printed) == {"id": 7, "qty": 3, "cid": "c-1"}


def test_a_result_that_is_not_json_is_printed_as_its_repr(app_dir: Path) -> None:
    result = run_cli("trigger", "--app-dir", str(app_dir), "shop:app", "object")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("<object object at ")


def test_a_failing_handler_exits_1_with_the_error(app_dir: Path) -> None:
    result = run_cli("trigger", "--app-dir", str(app_dir), "shop:app", "boom")
    assert result.returncode == 1
    assert "Error: event 'boom' failed: ValueError('out of stock')" in result.stderr
    # Shutdown hooks still ran, and the core logged the failure with its traceback.
    assert result.stdout.splitlines() == ["startup", "shutdown"]
    assert "Traceback" in result.stderr


def test_no_matching_route_exits_1(app_dir: Path) -> None:
    result = run_cli("trigger", "--app-dir", str(app_dir), "shop:app", "nothing:here")
    assert result.returncode == 1
    assert "no route matches event path 'nothing:here'" in result.stderr


@pytest.mark.parametrize(("data", "message"), [("{bad", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_bad_data_is_a_usage_error(app_dir: Path, data: str, message: str) -> None:
    result = run_cli("trigger", "--app-dir", str(app_dir), "shop:app", "order:1:created", "--data", data)
    assert result.returncode == 2
    assert message in result.stderr
