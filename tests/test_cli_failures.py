"""Start-up failures of ``tiny-listener run``: one ``Error:`` line and a ``Hint:`` line, exit
status 1, when tiny-listener refuses a setting or the environment; the traceback when the
user's code raised, once, without the command's own frames."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from .cli_helpers import run_cli, write_module

HTTP_APP = """
    from tiny_listener.http import HTTPListener

    app = HTTPListener()
"""


def block_module(tmp_path: Path, name: str) -> dict[str, str]:
    """An environment in which importing ``name`` fails as if it were not installed."""
    blocker = tmp_path / "blocker" / name
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(f"raise ModuleNotFoundError('no {name}', name={name!r})\n")
    return {"PYTHONPATH": str(blocker.parent)}


def short_error(stderr: str) -> list[str]:
    """The lines of ``stderr``, checked to be an ``Error:`` line and a ``Hint:`` line only."""
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("Error: "), stderr
    assert lines[1].startswith("Hint: "), stderr
    return lines


def test_a_missing_extra_at_import_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    write_module(tmp_path, "web", HTTP_APP)
    result = run_cli("run", "--app-dir", str(tmp_path), "web:app", env=block_module(tmp_path, "h11"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: web:app: 'h11' is not installed; install it with: pip install 'tiny-listener[http]'"
    ]


def test_a_missing_extra_when_listening_is_one_line_too(tmp_path: Path) -> None:
    write_module(tmp_path, "web", HTTP_APP)
    env = block_module(tmp_path, "httptools")
    result = run_cli("run", "--app-dir", str(tmp_path), "--port", "0", "--http", "httptools", "web:app", env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: web:app: 'httptools' is not installed; install it with: pip install 'tiny-listener[httptools]'"
    ]


def test_a_broker_listeners_missing_extra_is_one_line_too(tmp_path: Path) -> None:
    write_module(tmp_path, "worker", """
        from tiny_listener.redis import RedisStreamListener

        app = RedisStreamListener("redis://127.0.0.1:6379/0")
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "worker:app", env=block_module(tmp_path, "redis"))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: worker:app: 'redis")
    assert line.endswith("is not installed; install it with: pip install 'tiny-listener[redis]'")


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["run", "workers"])
def test_a_port_in_use_is_one_line_and_a_hint(tmp_path: Path, workers: list[str]) -> None:
    write_module(tmp_path, "web", HTTP_APP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "--app-dir", str(tmp_path), "--port", str(port), *workers, "web:app")
    assert result.returncode == 1
    error, hint = short_error(result.stderr)
    assert error == (
        f"Error: web:app: OSError: error while attempting to bind on address ('127.0.0.1', {port}): "
        "address already in use"
    )
    assert "choose another port with --port" in hint
    assert hint.endswith("--log-level debug shows the traceback")


def test_log_level_debug_shows_the_traceback_once(tmp_path: Path) -> None:
    write_module(tmp_path, "web", HTTP_APP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "--app-dir", str(tmp_path), "--port", str(port), "--log-level", "debug", "web:app")
    assert result.returncode == 1
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert "click" not in result.stderr
    assert result.stderr.splitlines()[-2].startswith("Error: web:app: OSError: error while attempting to bind")


def test_a_bad_url_is_one_line_and_a_hint(tmp_path: Path) -> None:
    write_module(tmp_path, "worker", """
        from tiny_listener.redis import RedisStreamListener

        app = RedisStreamListener("http://127.0.0.1:6379/0")
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "worker:app")
    assert result.returncode == 1
    error, _ = short_error(result.stderr)
    assert error.startswith("Error: worker:app: ")
    assert "ValueError" in error and "redis://" in error


def test_a_listener_without_listen_is_one_line_and_a_hint(tmp_path: Path) -> None:
    write_module(tmp_path, "bare", """
        from tiny_listener import Listener

        app = Listener()
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "bare:app")
    assert result.returncode == 1
    error, hint = short_error(result.stderr)
    assert error == (
        "Error: bare:app: NotImplementedError: Listener must implement `async def listen(self)` or host a source"
        " (add_source)"
    )
    assert "define listen() in your Listener subclass, add a source" in hint


def test_a_setting_the_core_refuses_at_import_points_at_the_users_line(tmp_path: Path) -> None:
    write_module(tmp_path, "routes_app", """
        from tiny_listener import Listener

        app = Listener()


        @app.on_event("order/{id:nope}")
        async def order(): ...
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "routes_app:app")
    assert result.returncode == 1
    error, hint = short_error(result.stderr)
    assert error == "Error: routes_app:app: RouteError: unknown path convertor 'nope' in route 'order/{id:nope}'"
    # The decorator's line; Python before 3.11 reports the decorated def's line for it.
    line = 7 if sys.version_info >= (3, 11) else 8
    assert hint.startswith(f"Hint: see {tmp_path / 'routes_app.py'}, line {line};")


def test_an_exception_raised_by_the_users_module_keeps_its_traceback_without_the_commands_frames(
    tmp_path: Path,
) -> None:
    write_module(tmp_path, "broken", """
        import json

        SETTINGS = json.loads("{not json")
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "broken:app")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith(f'  File "{tmp_path / "broken.py"}", line 4, in <module>')
    assert "click" not in result.stderr and "importlib" not in result.stderr
    assert result.stderr.count("Traceback (most recent call last)") == 1
    assert lines[-1] == "Error: broken:app: JSONDecodeError: Expecting property name enclosed in double quotes: " \
        "line 1 column 2 (char 1)"


def test_a_failing_startup_hook_of_the_user_shows_its_traceback_once(tmp_path: Path) -> None:
    write_module(tmp_path, "hooked", """
        from tiny_listener import Listener


        class App(Listener):
            async def listen(self):
                await self.wait_for_shutdown()


        app = App()


        @app.startup
        async def connect():
            raise ConnectionRefusedError("the database is not there")
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "hooked:app")
    assert result.returncode == 1
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert 'hooked.py", line 15, in connect' in result.stderr
    assert result.stderr.splitlines()[-1] == "Error: hooked:app: ConnectionRefusedError: the database is not there"


def test_a_failing_listen_of_the_user_shows_its_traceback_once(tmp_path: Path) -> None:
    write_module(tmp_path, "failing", """
        from tiny_listener import Listener


        class App(Listener):
            async def listen(self):
                {}["queue"]


        app = App()
    """)
    result = run_cli("run", "--app-dir", str(tmp_path), "failing:app")
    assert result.returncode == 1
    # The core logs the failure with its traceback as it happens; the command adds one line.
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert result.stderr.startswith("ERROR: listen() failed: KeyError('queue')")
    assert result.stderr.splitlines()[-1] == "Error: failing:app: KeyError: 'queue'"


def test_routes_reports_a_missing_extra_in_one_line_without_the_debug_hint(tmp_path: Path) -> None:
    write_module(tmp_path, "web", HTTP_APP)
    result = run_cli("routes", "--app-dir", str(tmp_path), "web:app", env=block_module(tmp_path, "h11"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: web:app: 'h11' is not installed; install it with: pip install 'tiny-listener[http]'"
    ]
    write_module(tmp_path, "bad_route", """
        from tiny_listener import Listener

        app = Listener()
        app.on_event("{x:nope}")(lambda: None)
    """)
    result = run_cli("routes", "--app-dir", str(tmp_path), "bad_route:app")
    assert result.returncode == 1
    _, hint = short_error(result.stderr)
    assert "--log-level" not in hint  # routes has no such option
