"""Running the ``tiny-listener`` command in a subprocess, for the test_cli_* modules."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Iterable, Iterator

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


@contextlib.contextmanager
def running_cli(
    *args: str, ignore_sigint: bool = False, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], LineReader]]:
    """Start the command with stdout and stderr merged and read by a :class:`LineReader`, in a
    process group of its own; on leaving the block, SIGKILL that group (the command and any
    child it left behind, such as a ``--reload`` child) and wait for the command.

    ``ignore_sigint`` starts it with SIGINT ignored, as a shell script's ``&`` job is; ``env``
    adds environment variables."""
    argv = [*CLI, *args]
    if ignore_sigint:
        argv = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )
    output = LineReader(proc)
    try:
        yield proc, output
    finally:
        kill_group(proc)
        output.close()


@contextlib.contextmanager
def ended(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Yield ``proc``; on leaving the block, SIGKILL it if it still runs, and collect it (its
    pipes closed), whatever happened in the block."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process group ``proc`` leads (even if ``proc`` itself has exited, what it
    started may not have) and wait for ``proc``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def kill_pids(pids: Iterable[int]) -> None:
    """SIGKILL every process of ``pids`` still running (workers a test saw start)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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

    def wait_for(self, text: str, timeout: float) -> str | None:
        """Return the next line containing ``text`` once it arrives, None after ``timeout``
        seconds or at the end of the output."""
        match = self.wait_for_match(re.escape(text), timeout)
        return None if match is None else match.string

    def wait_for_match(self, pattern: str, timeout: float) -> re.Match[str] | None:
        """Return the match of the regular expression ``pattern`` in the next line it matches
        once it arrives, None after ``timeout`` seconds or at the end of the output."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)  # the end stays visible to later calls
                return None
            self.seen.append(line)
            match = re.search(pattern, line)
            if match is not None:
                return match

    def wait_for_end(self, timeout: float) -> bool:
        """Return True once the output ends (every process writing to it has exited, or closed
        it), False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                self.lines.put(None)
                return True
            self.seen.append(line)
