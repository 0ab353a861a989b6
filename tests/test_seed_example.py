"""The seed's tutorial, run as its page says: ``tiny-listener http_web:app`` from examples/."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import ended
from tests.conftest import service_reachable

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SEED = ROOT.parent / "shared" / "seed" / "000_83abfb8fe3308e9f.txt"
PORT = 8000  # hard-coded in the seed


def seed_code() -> str:
    text = SEED.read_text()
    start = text.index("```python\n") + len("```python\n")
    return text[start : text.index("```", start)]


@pytest.mark.skipif(not SEED.exists(), reason="the seed document is not beside the repository")
def test_example_is_the_seed_verbatim() -> None:
    assert (EXAMPLES / "http_web.py").read_text() == seed_code()


def get(path: str) -> tuple[int, str]:
    # A keep-alive request, as a browser sends: the seed's server cannot honour
    # "Connection: close" (it calls start_next_cycle() regardless), see issue 3.
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_seed_example_serves_and_stops_cleanly_on_ctrl_c() -> None:
    if service_reachable("127.0.0.1", PORT):
        pytest.fail(f"port {PORT} is taken: the seed example needs it")
    command = shutil.which("tiny-listener") or ""
    args = [command] if command else [sys.executable, "-m", "tiny_listener"]
    proc = subprocess.Popen(
        [*args, "http_web:app"],
        cwd=EXAMPLES,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    with ended(proc):
        try:
            assert proc.stdout is not None
            assert "HTTP server running" in proc.stdout.readline()
            deadline = time.monotonic() + 10
            while not service_reachable("127.0.0.1", PORT) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert get("/user/bob") == (200, "Hello, bob!")
            assert get("/throw") == (500, "Internal Server Error")
            assert get("/anything/else") == (200, "Welcome!")
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    access = re.findall(r'INFO: [\d.:a-f]+:\d+ - "GET (\S+) HTTP/1.1" (\d+)', out)
    assert access == [("/user/bob", "200"), ("/throw", "500"), ("/anything/else", "200")]
