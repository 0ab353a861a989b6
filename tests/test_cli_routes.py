"""``tiny-listener routes MODULE:ATTR``."""

from __future__ import annotations

import json
from pathlib import Path

from .cli_helpers import run_cli, write_module

APP = """
    from tiny_listener import Listener, Param


    class App(Listener):
        async def listen(self):
            raise AssertionError("routes must not run listen()")


    app = App()


    @app.on_event("order:{id:int}:created", retries=3, queue="orders")
    async def on_order(id: Param):
        return id


    @app.on_event("GET:/user/{username}/{ratio:float}")
    async def hello(username: Param, ratio: Param):
        return username


    @app.on_event()
    async def fallback():
        return None
"""


def test_routes_prints_order_path_handler_params_and_options(tmp_path: Path) -> None:
    write_module(tmp_path, "shop", APP)
    result = run_cli("routes", "--app-dir", str(tmp_path), "shop:app")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["#", "PATH", "HANDLER", "PARAMS", "OPTIONS"]
    assert [line.split(None, 3)[:3] for line in lines] == [
        ["0", "order:{id:int}:created", "shop.on_order"],
        ["1", "GET:/user/{username}/{ratio:float}", "shop.hello"],
        ["2", "{_:path}", "shop.fallback"],
    ]
    assert "id:int" in lines[0] and "retries=3, queue='orders'" in lines[0]
    assert "username:str, ratio:float" in lines[1]
    assert lines[2].rstrip().endswith("-")


def test_routes_json(tmp_path: Path) -> None:
    write_module(tmp_path, "shop", APP)
    result = run_cli("routes", "--json", "--app-dir", str(tmp_path), "shop:app")
    assert result.returncode == 0, result.stderr
    first, second, _ = json.loads(result.stdout)
    assert first == {
        "order": 0,
        "path": "order:{id:int}:created",
        "handler": "shop.on_order",
        "params": {"id": "int"},
        "options": {"retries": 3, "queue": "orders"},
    }
    assert second["params"] == {"username": "str", "ratio": "float"}


def test_routes_of_a_missing_module_is_a_short_error(tmp_path: Path) -> None:
    result = run_cli("routes", "--app-dir", str(tmp_path), "nowhere:app")
    assert result.returncode == 1
    assert "could not import module 'nowhere'" in result.stderr and "Traceback" not in result.stderr
