"""``tiny-listener run --reload``: edit the app's module, see the new code run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .cli_helpers import run_cli, running_cli, write_module

APP = """
    from tiny_listener import Listener

    VERSION = {version}


    class App(Listener):
        async def listen(self):
            print(f"VERSION {{VERSION}}", flush=True)


    app = App()


    @app.shutdown
    async def stopped():
        print(f"STOPPED {{VERSION}}", flush=True)
"""


def test_reload_restarts_the_app_with_the_edited_code(tmp_path: Path) -> None:
    write_module(tmp_path, "live", APP.format(version=1))
    with running_cli("run", "--reload", "--app-dir", str(tmp_path), "live:app") as (proc, output):
        assert output.wait_for("VERSION 1", timeout=30), output.seen
        # The watcher starts right after the first child; if the edit raced it, edit again.
        for _ in range(3):
            write_module(tmp_path, "live", APP.format(version=2))
            if output.wait_for("VERSION 2", timeout=10):
                break
        else:
            raise AssertionError(f"the edit was not picked up: {output.seen}")
        # The old process was stopped gracefully (its shutdown hook ran) before the new one.
        assert any("STOPPED 1" in line for line in output.seen), output.seen
        assert any("restarting:" in line and "live.py" in line for line in output.seen), output.seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert output.wait_for_end(timeout=30)
    assert any("STOPPED 2" in line for line in output.seen), output.seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_reload_started_with_sigint_ignored_stops_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    # As a `&` job of a script: Python keeps SIGINT ignored, the command must handle it anyway.
    write_module(tmp_path, "live", APP.format(version=1))
    with running_cli("run", "--reload", "--app-dir", str(tmp_path), "live:app", ignore_sigint=True) as (proc, output):
        assert output.wait_for("VERSION 1", timeout=30), output.seen
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        # The end of the output means the app's process has exited too: it shares the pipe.
        assert output.wait_for_end(timeout=30), output.seen
    assert any("STOPPED 1" in line for line in output.seen), output.seen


def test_reload_without_watchfiles_is_a_short_error(tmp_path: Path) -> None:
    # A package that fails to import stands in for watchfiles not being installed.
    blocker = tmp_path / "blocker" / "watchfiles"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError('no watchfiles', name='watchfiles')\n")
    write_module(tmp_path, "live", APP.format(version=1))
    env = {"PYTHONPATH": str(blocker.parent)}
    result = run_cli("run", "--reload", "--app-dir", str(tmp_path), "live:app", env=env)
    assert result.returncode == 1
    assert "pip install 'tiny-listener[reload]'" in result.stderr
