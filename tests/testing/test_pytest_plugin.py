"""The pytest plugin, run in a separate pytest process as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = """
from tiny_listener import Listener, Param


class App(Listener):
    async def listen(self):
        raise AssertionError("listen() must not run in tests")


app = App()
app.calls = []


@app.startup
async def started():
    app.calls.append("startup")


@app.shutdown
async def stopped():
    app.calls.append("shutdown")


@app.on_event("GET:/user/{username}")
async def hello(username: Param):
    return f"Hello, {username}!"
"""

WEB_APP = """
from tiny_listener import Param
from tiny_listener.http import HTTPListener

web = HTTPListener()


@web.on_event("GET:/user/{username}")
async def hello(username: Param):
    return f"Hello, {username}!"
"""

SYNC_TESTS = """
from myapp import app
from webapp import web


def test_http(tl_http_client):
    http = tl_http_client(web)
    response = http.get("/user/bob")
    assert (response.status_code, response.text) == (200, "Hello, bob!")


def test_sync(tl_client):
    client = tl_client(app)
    assert client.trigger("GET:/user/bob") == "Hello, bob!"
    assert app.calls == ["startup"]


def test_after():
    # The fixture shut the app down after the previous test.
    assert app.calls == ["startup", "shutdown"]
"""

ASYNC_TESTS = """
import pytest

from myapp import app
from webapp import web


@pytest.mark.asyncio
async def test_http(tl_async_http_client):
    http = await tl_async_http_client(web)
    assert (await http.get("/user/ann")).text == "Hello, ann!"


@pytest.mark.asyncio
async def test_async(tl_async_client):
    client = await tl_async_client(app)
    assert await client.trigger("GET:/user/bob") == "Hello, bob!"
    assert [e.handler for e in client.events] == ["hello"]


def test_after():
    assert app.calls == ["startup", "shutdown"]
"""


def run_pytest(
    tmp_path: Path, tests: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "myapp.py").write_text(APP)
    (tmp_path / "webapp.py").write_text(WEB_APP)
    (tmp_path / "test_user.py").write_text(textwrap.dedent(tests))
    # An empty ini file makes tmp_path the rootdir, away from this project's configuration.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-q", *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_tl_client_needs_no_async_plugin(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, SYNC_TESTS, "-p", "no:asyncio", "-p", "no:anyio")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_tl_async_client_runs_on_the_pytest_asyncio_loop(tmp_path: Path, mode: str) -> None:
    done = run_pytest(
        tmp_path, ASYNC_TESTS, "-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


NEEDS_ASYNC_FIXTURE = """
def test_needs_it(tl_async_client):
    pass
"""


def test_tl_async_client_with_pytest_asyncio_disabled_is_reported_by_pytest(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, NEEDS_ASYNC_FIXTURE, "-p", "no:asyncio")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "requested an async fixture" in done.stdout


def test_tl_async_client_without_pytest_asyncio_fails_with_a_hint(tmp_path: Path) -> None:
    # A package that fails to import stands in for pytest-asyncio not being installed.
    blocker = tmp_path / "blocker" / "pytest_asyncio"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pytest-asyncio is not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    done = run_pytest(tmp_path, NEEDS_ASYNC_FIXTURE, "-p", "no:asyncio", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "needs pytest-asyncio" in done.stdout
