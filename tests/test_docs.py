"""The docs site builds with ``mkdocs build --strict``, and every complete program in it runs.

A code block in ``docs/*.md`` is a complete program when an HTML comment marks it, on the line
right before its ```` ```python ```` fence:

- ``<!-- run -->``: ``python program.py`` must exit with status 0 within a minute.
- ``<!-- run: OPTIONS -->``, options separated by spaces (shell quoting):

  - ``file=NAME.py``: the file the program is saved as (default ``program.py``);
  - ``cli=ATTR``: run it as ``tiny-listener --app-dir DIR NAME:ATTR`` instead;
  - ``server port=N``: it serves until stopped; the literal port ``N`` in the program is
    replaced by a free one, the test waits until that port accepts connections, then sends
    SIGINT and the program must exit with status 0;
  - ``get=PATH expect=TEXT``: with ``server``, ``GET PATH`` must answer 200 with body TEXT
    (``contains=TEXT``: with a body containing TEXT);
  - ``send=LINE expect=TEXT``: with ``server``, a TCP client sends LINE and a newline and
    must read back the line TEXT;
  - ``requires=redis|mqtt|amqp|nats``: the broker must be running on its default port
    (skipped otherwise, a failure under CI=true).

A ```` ```text ```` block right after a marked program, itself marked ``<!-- output -->``, is
what the program must print. A Python block that looks like a complete program (it calls
``asyncio.run(`` or ``.run()``, or tests ``__main__``) must be marked, or marked
``<!-- norun: reason -->`` to say why it cannot run here.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import free_port, require_service, service_reachable

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARK = re.compile(r"<!--\s*(run|norun)\b:?\s*(.*?)\s*-->\s*\Z", re.S)
OUTPUT = re.compile(r"\A\s*<!--\s*output\s*-->\s*\n```text\n(.*?)^```", re.M | re.S)
LOOKS_COMPLETE = re.compile(r"asyncio\.run\(|\.run\(\)|__name__ == .__main__.")

BROKERS = {
    "redis": ("Redis", 6379),
    "mqtt": ("MQTT broker", 1883),
    "amqp": ("RabbitMQ", 5672),
    "nats": ("NATS", 4222),
}
PROGRAM_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 20.0


@dataclass
class Block:
    page: str
    line: int
    code: str
    mark: str | None  # "run", "norun" or None
    options: Dict[str, str] = field(default_factory=dict)
    flags: List[str] = field(default_factory=list)
    output: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_options(text: str) -> tuple[Dict[str, str], List[str]]:
    options: Dict[str, str] = {}
    flags: List[str] = []
    for token in shlex.split(text):
        key, sep, value = token.partition("=")
        if sep:
            options[key] = value
        else:
            flags.append(key)
    return options, flags


def python_blocks() -> List[Block]:
    blocks: List[Block] = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for fence in FENCE.finditer(text):
            before = text[: fence.start()]
            # The marker must be the last thing before the fence (blank lines aside).
            last_comment_start = before.rfind("<!--")
            mark = MARK.search(before[last_comment_start:]) if last_comment_start >= 0 else None
            block = Block(
                page=str(page.relative_to(DOCS)),
                line=before.count("\n") + 1,
                code=fence.group(1),
                mark=mark.group(1) if mark else None,
            )
            if mark and mark.group(1) == "run":
                block.options, block.flags = parse_options(mark.group(2))
                output = OUTPUT.match(text[fence.end() :])
                block.output = output.group(1) if output else None
            blocks.append(block)
    return blocks


BLOCKS = python_blocks()
PROGRAMS = [block for block in BLOCKS if block.mark == "run"]


def test_docs_have_programs_to_run() -> None:
    # Guards the parser itself: if it stopped finding markers, every page would pass.
    assert len(PROGRAMS) >= 10, [block.id for block in PROGRAMS]


def test_every_complete_program_is_marked() -> None:
    unmarked = [block.id for block in BLOCKS if block.mark is None and LOOKS_COMPLETE.search(block.code)]
    assert unmarked == [], "mark these blocks <!-- run --> (or <!-- norun: reason -->)"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_tutorial_program_is_the_seed_example_verbatim() -> None:
    [tutorial] = [block for block in PROGRAMS if block.options.get("file") == "http_web.py"]
    assert tutorial.page == "tutorial.md"
    assert tutorial.code == (ROOT / "examples" / "http_web.py").read_text()


def command_for(block: Block, path: Path) -> List[str]:
    if "cli" in block.options:
        app = f"{path.stem}:{block.options['cli']}"
        return [sys.executable, "-m", "tiny_listener", "--app-dir", str(path.parent), app]
    return [sys.executable, str(path)]


def http_get(port: int, target: str) -> tuple[int, str]:
    # Keep-alive, as a browser: the seed's tiny server cannot honour "Connection: close".
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def tcp_exchange(port: int, line: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, sock.makefile("rwb") as stream:
        stream.write(line.encode() + b"\n")
        stream.flush()
        return stream.readline().decode().rstrip("\n")


def run_server(block: Block, command: List[str], cwd: Path, env: Dict[str, str], port: int) -> None:
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        # A subprocess's port cannot be awaited as an event: poll it, with a deadline.
        while not service_reachable("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"{block.id} exited with {proc.returncode} before serving:\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"{block.id} did not listen on port {port} within {SERVER_START_TIMEOUT}s")
            time.sleep(0.05)
        if "get" in block.options:
            status, body = http_get(port, block.options["get"])
            assert status == 200, body
            if "expect" in block.options:
                assert body == block.options["expect"]
            if "contains" in block.options:
                assert block.options["contains"] in body
        if "send" in block.options:
            assert tcp_exchange(port, block.options["send"]) == block.options["expect"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=PROGRAM_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{block.id} did not stop on SIGINT:\n{out}\n{err}")
    assert proc.returncode == 0, f"{block.id} exited with {proc.returncode}:\n{out}\n{err}"


@pytest.mark.parametrize("block", PROGRAMS, ids=[block.id for block in PROGRAMS])
def test_program_runs(block: Block, tmp_path: Path) -> None:
    if "requires" in block.options:
        name, port = BROKERS[block.options["requires"]]
        require_service(name, "127.0.0.1", port)
    code = block.code
    server_port = 0
    if "server" in block.flags:
        server_port = free_port()
        code = re.sub(rf"\b{block.options['port']}\b", str(server_port), code)
    path = tmp_path / block.options.get("file", "program.py")
    path.write_text(code)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = command_for(block, path)
    if server_port:
        run_server(block, command, tmp_path, env, server_port)
        return
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{block.id} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    if block.output is not None:
        assert result.stdout == block.output, f"{block.id} printed:\n{result.stdout}"
