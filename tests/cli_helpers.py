"""Running the ``tiny-listener`` command in a subprocess, for the test_cli_* modules."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

CLI = [sys.executable, "-m", "tiny_listener"]


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (``env`` added to the environment); never raises for a
    non-zero status."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start the command with stdout and stderr piped (stderr merged into stdout)."""
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class LineReader:
    """Collect a process's output lines in a thread so that tests can wait for one with a
    deadline instead of blocking on ``readline()``."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._stream = proc.stdout
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Once the process has exited: collect the rest of its output and close the pipe."""
        self._thread.join(timeout=10)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        self._stream.close()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float) -> bool:
        """Return True once a line containing ``text`` arrives, False after ``timeout`` seconds
        or at the end of the output."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                self.lines.put(None)  # the end stays visible to later calls
                return False
            self.seen.append(line)
            if text in line:
                return True
