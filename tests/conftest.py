"""Shared test fixtures: free ports, running services and subprocess helpers."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest

if sys.version_info < (3, 10):
    # pytest-asyncio (1.2, the last for Python 3.9) asks for this thread's event loop before
    # each test; on Python 3.9 the first ask makes one that nothing closes, and its
    # ResourceWarning, when it is collected, fails whichever test runs then. With the loop set
    # (to none) once, the ask finds none and makes none.
    asyncio.set_event_loop(None)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test if the service is not reachable; under CI=true, fail instead."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    return free_port()
