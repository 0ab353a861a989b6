from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import tiny_listener

from .cli_helpers import ended, running_cli, write_module

CLI = [sys.executable, "-m", "tiny_listener"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tiny-listener {tiny_listener.__version__}"


def test_module_not_found_is_a_short_error_without_traceback(tmp_path: Path) -> None:
    result = run_cli("--app-dir", str(tmp_path), "no_such_module:app")
    assert result.returncode == 1
    assert "could not import module 'no_such_module'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_attribute_and_bad_format(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("x = 1\n")
    missing = run_cli("--app-dir", str(tmp_path), "mod:app")
    assert missing.returncode == 1 and "has no attribute 'app'" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_listener = run_cli("--app-dir", str(tmp_path), "mod:x")
    assert not_listener.returncode == 1 and "not a tiny_listener.Listener" in not_listener.stderr
    bad = run_cli("--app-dir", str(tmp_path), "mod")
    assert bad.returncode == 1 and "<module>:<attribute>" in bad.stderr


def test_module_that_raises_shows_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import missing_dependency_xyz\n")
    result = run_cli("--app-dir", str(tmp_path), "broken:app")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "missing_dependency_xyz" in result.stderr


APP = textwrap.dedent(
    """
    import asyncio, logging
    from tiny_listener import Listener

    class App(Listener):
        async def listen(self):
            logging.getLogger("tiny_listener").debug("debug line")
            print("READY", flush=True)

    app = App()

    @app.shutdown
    async def bye():
        print("BYE", flush=True)
    """
)


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "app_mod.py").write_text(APP)
    return subprocess.Popen(
        [*CLI, "--app-dir", str(tmp_path), *args, "app_mod:app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigterm_and_sigint_stop_cleanly_with_status_zero(tmp_path: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with ended(start(tmp_path)) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "BYE" in out and "Traceback" not in err


def test_log_level_option(tmp_path: Path) -> None:
    with ended(start(tmp_path, "--log-level", "debug")) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "DEBUG: debug line" in err


def test_host_port_rejected_for_a_listener_without_them(tmp_path: Path) -> None:
    (tmp_path / "app_mod.py").write_text(APP)
    result = run_cli("--app-dir", str(tmp_path), "--port", "1234", "app_mod:app")
    assert result.returncode == 2 and "--port is not supported" in result.stderr


def test_an_app_dir_named_like_a_command_is_an_option_value(tmp_path: Path) -> None:
    app_dir = tmp_path / "routes"
    app_dir.mkdir()
    (app_dir / "mod.py").write_text("x = 1\n")
    result = run_cli("--app-dir", "routes", "mod:x", cwd=tmp_path)
    assert result.returncode == 1 and "not a tiny_listener.Listener" in result.stderr


def test_http_parser_option_is_rejected_for_a_listener_without_a_parser(tmp_path: Path) -> None:
    (tmp_path / "app_mod.py").write_text(APP)
    result = run_cli("--app-dir", str(tmp_path), "--http", "h11", "app_mod:app")
    assert result.returncode == 2 and "--http is not supported" in result.stderr


def test_cancel_timeout_option_bounds_each_wait_for_cancelled_tasks(tmp_path: Path) -> None:
    write_module(tmp_path, "deaf", """
        import asyncio

        from tiny_listener import Listener


        class App(Listener):
            async def listen(self):
                print("LISTENING", flush=True)
                while True:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        pass  # ignores its cancellation


        app = App()
    """)
    with running_cli("run", "--cancel-timeout", "0.3", "--app-dir", str(tmp_path), "deaf:app") as (proc, output):
        assert output.wait_for("LISTENING", 20)
        proc.send_signal(signal.SIGTERM)
        # The step waited --cancel-timeout (0.3 s), not the default 5 s, and says so.
        assert output.wait_for("listen() did not stop within 0.3s of being cancelled", 20), output.seen
        assert proc.wait(20) == 0


def test_cancel_timeout_must_not_be_negative(tmp_path: Path) -> None:
    (tmp_path / "app_mod.py").write_text(APP)
    result = run_cli("run", "--cancel-timeout", "-1", "--app-dir", str(tmp_path), "app_mod:app")
    assert result.returncode == 2 and "--cancel-timeout" in result.stderr
