"""``tiny-listener run --log-level debug --log-format json``: structured event logs."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, List

from .cli_helpers import CLI, write_module

APP = """
    import asyncio

    from tiny_listener import Listener


    class App(Listener):
        async def listen(self):
            await self.trigger_event("ping", cid="session-7")
            try:
                await self.trigger_event("boom")
            except ValueError:
                pass
            print("READY", flush=True)


    app = App()


    @app.on_event("ping")
    async def ping():
        return "pong"


    @app.on_event("boom")
    async def boom():
        raise ValueError("boom")
"""


def run_app(tmp_path: Path, *options: str) -> str:
    """Run the app until it has handled its two events, stop it, return its stderr."""
    write_module(tmp_path, "logged", APP)
    proc = subprocess.Popen(
        [*CLI, "run", "--app-dir", str(tmp_path), *options, "logged:app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return err


def test_default_output_has_no_event_lines(tmp_path: Path) -> None:
    err = run_app(tmp_path)
    assert "handler=ping" not in err
    assert err.splitlines()[0].startswith("ERROR: event 'boom' failed in handler boom")


def test_debug_level_logs_one_text_line_per_event(tmp_path: Path) -> None:
    err = run_app(tmp_path, "--log-level", "debug")
    lines = [line for line in err.splitlines() if line.startswith("DEBUG: event ")]
    assert len(lines) == 2
    assert lines[0].startswith("DEBUG: event 'ping' handler=ping cid=session-7 outcome=done duration_ms=")
    assert "event 'boom' handler=boom" in lines[1] and "outcome=failed" in lines[1]


def test_json_format_makes_every_line_a_json_object_with_the_event_fields(tmp_path: Path) -> None:
    err = run_app(tmp_path, "--log-level", "debug", "--log-format", "json")
    records: List[Dict[str, Any]] = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    # Tracebacks are inside the JSON objects, so no other line is printed.
    assert len(records) == len(err.splitlines())
    events = [r for r in records if r["logger"] == "tiny_listener.events"]
    ping, boom = events
    assert ping["level"] == "DEBUG"
    assert (ping["event_path"], ping["handler"], ping["cid"], ping["outcome"]) == ("ping", "ping", "session-7", "done")
    assert isinstance(ping["duration_ms"], float) and ping["duration_ms"] >= 0
    assert boom["outcome"] == "failed" and boom["error"] == "ValueError('boom')"
    (failure,) = [r for r in records if r["level"] == "ERROR"]
    assert failure["event_path"] == "boom" and failure["handler"] == "boom"
    assert "ValueError: boom" in failure["exc_info"]
    assert all(r["time"].endswith("+00:00") for r in records)
