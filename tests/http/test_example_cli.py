"""The tutorial app, ``examples/http_app.py``, served by the ``tiny-listener`` command."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

from .client import TIMEOUT, Client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("parser_option", [[], ["--http", "httptools"]], ids=["default", "httptools"])
async def test_the_example_runs_from_the_cli_answers_and_stops_on_sigint(parser_option: list[str]) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiny_listener", "--app-dir", str(EXAMPLES),
        "--host", "127.0.0.1", "--port", str(port), *parser_option, "http_app:app",
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        while True:  # the server says when it is ready
            line = await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)
            assert line, "the server exited before serving"
            if f"http://127.0.0.1:{port}".encode() in line:
                break
        client = Client(*await asyncio.open_connection("127.0.0.1", port))
        hello = await client.request("GET", "/user/bob")
        assert (hello.status, hello.body) == (200, b"Hello, bob!")
        thrown = await client.request("GET", "/throw")
        assert (thrown.status, thrown.body) == (500, b"Internal Server Error")
        for method, target in (("GET", "/anything/else"), ("POST", "/user/bob"), ("GET", "/")):
            other = await client.request(method, target)
            assert (other.status, other.body) == (200, b"Welcome!")
        await client.close()
        proc.send_signal(signal.SIGINT)
        stderr = (await asyncio.wait_for(proc.stderr.read(), TIMEOUT)).decode()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        assert '"GET /user/bob HTTP/1.1" 200' in stderr
        assert '"GET /throw HTTP/1.1" 500' in stderr
        assert "RuntimeError" in stderr  # the failing handler's traceback is logged
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
