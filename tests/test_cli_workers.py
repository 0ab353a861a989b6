"""``tiny-listener run --workers N``: N processes of the app behind one supervisor, with real
processes, signals and sockets. The restart decisions alone: tests/test_workers.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from .cli_helpers import LineReader, kill_pids, run_cli, running_cli, write_module
from .conftest import require_service

TIMEOUT = 30

HTTP_APP = """
    import os

    from tiny_listener.http import HTTPListener

    app = HTTPListener()


    @app.on_event("GET:/pid")
    async def pid():
        return {"pid": os.getpid()}


    @app.shutdown
    async def bye():
        # One write() per line: the workers share the pipe, and print() writes the text and its
        # newline separately, so two workers' lines could interleave ("BYE 1BYE 2").
        os.write(1, f"BYE {os.getpid()}\\n".encode())
"""

TCP_APP = """
    import os

    from tiny_listener import Param
    from tiny_listener.tcp import TCPContext, TCPListener

    app = TCPListener()


    @app.on_event("{line}")
    async def echo(line: Param, ctx: TCPContext):
        ctx.send(f"{line} from {os.getpid()}")
"""


@pytest.fixture
def worker_pids() -> Iterator[List[int]]:
    """Pids of the workers a test saw start: SIGKILLed at the end if still running (they run
    in sessions of their own, out of reach of the command's process group)."""
    pids: List[int] = []
    try:
        yield pids
    finally:
        kill_pids(pids)


def get_pid(port: int) -> int:
    """GET /pid from the app; the pid of the worker that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/pid")
        response = connection.getresponse()
        assert response.status == 200
        return int(json.loads(response.read())["pid"])
    finally:
        connection.close()


def shared_port(output: LineReader) -> int:
    match = output.wait_for_match(r"share the socket on 127\.0\.0\.1:(\d+)", TIMEOUT)
    assert match, output.seen
    return int(match.group(1))


def started(output: LineReader, worker: int, pids: List[int]) -> int:
    """Wait for ``worker started (pid N)``; return N (and remember it in ``pids``)."""
    match = output.wait_for_match(rf"worker {worker} started \(pid (\d+)\)", TIMEOUT)
    assert match, output.seen
    pids.append(int(match.group(1)))
    return pids[-1]


def test_a_killed_worker_is_restarted_and_the_app_serves_again(tmp_path: Path, worker_pids: List[int]) -> None:
    write_module(tmp_path, "svc", HTTP_APP)
    args = ("run", "--workers", "1", "--port", "0", "--app-dir", str(tmp_path), "svc:app")
    with running_cli(*args) as (proc, output):
        port = shared_port(output)
        first = started(output, 1, worker_pids)
        assert get_pid(port) == first
        os.kill(first, signal.SIGKILL)
        assert output.wait_for(f"worker 1 (pid {first}) killed by SIGKILL: restarting it in 0.5s", TIMEOUT)
        second = started(output, 1, worker_pids)
        # The supervisor holds the socket: a connection made meanwhile waits for the new worker.
        assert get_pid(port) == second
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert output.wait_for_end(TIMEOUT), output.seen
    assert f"BYE {second}" in output.seen


@pytest.mark.parametrize(
    "sig, ignore_sigint", [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["SIGTERM", "SIGINT-ignored-at-start"]
)
def test_a_signal_stops_every_worker_gracefully_with_status_zero(
    tmp_path: Path, worker_pids: List[int], sig: signal.Signals, ignore_sigint: bool
) -> None:
    write_module(tmp_path, "svc", HTTP_APP)
    args = ("run", "--workers", "2", "--port", "0", "--app-dir", str(tmp_path), "svc:app")
    with running_cli(*args, ignore_sigint=ignore_sigint) as (proc, output):
        port = shared_port(output)
        pids = {started(output, 1, worker_pids), started(output, 2, worker_pids)}
        for _ in range(2):
            assert output.wait_for(f"HTTP server running on http://127.0.0.1:{port}", TIMEOUT), output.seen
        assert get_pid(port) in pids
        proc.send_signal(sig)
        assert proc.wait(TIMEOUT) == 0, output.seen
        # Every worker has exited once the output ends: they all write to it.
        assert output.wait_for_end(TIMEOUT), output.seen
    for pid in pids:
        assert f"BYE {pid}" in output.seen  # its shutdown hooks ran
    stopped = {line for line in output.seen if " stopped" in line and line.startswith("INFO: worker ")}
    assert stopped == {f"INFO: worker {n} (pid {pid}) stopped" for n, pid in enumerate(worker_pids, 1)}


def test_tcp_workers_share_the_port(tmp_path: Path, worker_pids: List[int]) -> None:
    write_module(tmp_path, "echo", TCP_APP)
    args = ("run", "--workers", "2", "--port", "0", "--app-dir", str(tmp_path), "echo:app")
    with running_cli(*args) as (proc, output):
        port = shared_port(output)
        pids = {started(output, 1, worker_pids), started(output, 2, worker_pids)}
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock, sock.makefile("rwb") as stream:
            stream.write(b"hello\n")
            stream.flush()
            word, _, pid = stream.readline().decode().split()
        assert word == "hello" and int(pid) in pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0, output.seen


def test_broker_workers_share_their_consumer_group(tmp_path: Path, worker_pids: List[int]) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    redis = pytest.importorskip("redis")
    from tiny_listener.redis import publish

    url = "redis://127.0.0.1:6379/0"
    stream = f"tl-test-{uuid.uuid4().hex[:10]}:jobs"
    write_module(tmp_path, "consumer", f"""
        import os

        from tiny_listener import Param
        from tiny_listener.redis import RedisStreamListener

        app = RedisStreamListener({url!r}, streams=[{stream!r}], group="workers")


        @app.on_event("job:{{n:int}}")
        async def job(n: Param):
            os.write(1, f"HANDLED {{n}} BY {{os.getpid()}}\\n".encode())  # one write: see HTTP_APP
    """)
    try:
        with running_cli("run", "--workers", "2", "--app-dir", str(tmp_path), "consumer:app") as (proc, output):
            pids = {started(output, 1, worker_pids), started(output, 2, worker_pids)}
            consumers = set()
            for _ in range(2):
                match = output.wait_for_match(r"as consumer '(\S+)' of group 'workers'", TIMEOUT)
                assert match, output.seen
                consumers.add(match.group(1))
            assert len(consumers) == 2  # one consumer per worker, in one group

            async def publish_jobs() -> None:
                for n in range(20):
                    await publish(stream, f"job:{n}", url=url)

            asyncio.run(publish_jobs())
            handled = []
            for _ in range(20):
                match = output.wait_for_match(r"HANDLED (\d+) BY (\d+)", TIMEOUT)
                assert match, output.seen
                handled.append(int(match.group(1)))
                assert int(match.group(2)) in pids
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT) == 0, output.seen
            assert output.wait_for_end(TIMEOUT)
        assert sorted(handled) == list(range(20))  # each job once, by one worker or the other
        assert not any("HANDLED" in line for line in output.seen[output.seen.index(match.string) + 1 :])
    finally:
        client = redis.Redis.from_url(url)
        try:
            client.delete(stream, f"{stream}:dead")
        finally:
            client.close()


def test_a_worker_that_cannot_start_is_restarted_with_backoff_then_the_supervisor_gives_up(
    tmp_path: Path, worker_pids: List[int]
) -> None:
    # The supervisor imports the app fine (its parent is this test); its workers cannot, as
    # after a deploy that broke the module on disk.
    write_module(tmp_path, "fragile", f"""
        import os

        if os.getppid() != {os.getpid()}:
            raise RuntimeError("this worker cannot start")

        from tiny_listener import Listener


        class App(Listener):
            async def listen(self):
                await self.wait_for_shutdown()


        app = App()
    """)
    args = ("run", "--workers", "1", "--app-dir", str(tmp_path), "fragile:app")
    with running_cli(*args) as (proc, output):
        for _ in range(5):
            started(output, 1, worker_pids)
        assert proc.wait(TIMEOUT * 2) == 1, output.seen
        assert output.wait_for_end(TIMEOUT)
    restarts = [line for line in output.seen if "restarting it in" in line]
    assert [line.split("restarting it in ")[1] for line in restarts] == [
        "0.5s (failure 1 in a row)",
        "1.0s (failure 2 in a row)",
        "2.0s (failure 3 in a row)",
        "4.0s (failure 4 in a row)",
    ]
    assert all(line.startswith("WARNING: worker 1 (pid ") and "exited with status 1" in line for line in restarts)
    assert output.seen[-1] == (
        f"ERROR: worker 1 (pid {worker_pids[-1]}) exited with status 1: every worker failed 5 times in a row, "
        "giving up"
    )
    # Each attempt showed why: the traceback of the module's own error, then the one line.
    assert output.seen.count("Error: fragile:app: RuntimeError: this worker cannot start") == 5
    assert output.seen.count("RuntimeError: this worker cannot start") == 5


def test_a_worker_that_does_not_stop_is_killed_after_its_shutdown_timeout_and_a_margin(
    tmp_path: Path, worker_pids: List[int]
) -> None:
    write_module(tmp_path, "stuck", """
        import asyncio

        from tiny_listener import Listener


        class App(Listener):
            async def listen(self):
                print("LISTENING", flush=True)


        app = App()


        @app.shutdown
        async def never_done():
            await asyncio.Event().wait()
    """)
    args = ("run", "--workers", "1", "--shutdown-timeout", "0.5", "--app-dir", str(tmp_path), "stuck:app")
    with running_cli(*args) as (proc, output):
        pid = started(output, 1, worker_pids)
        assert output.wait_for("LISTENING", TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        assert output.wait_for(f"worker 1 (pid {pid}) still running 5.5s after the stop request: killing it", TIMEOUT)
        assert proc.wait(TIMEOUT) == 1


def test_workers_stop_by_themselves_when_the_supervisor_dies(tmp_path: Path, worker_pids: List[int]) -> None:
    write_module(tmp_path, "svc", HTTP_APP)
    args = ("run", "--workers", "1", "--port", "0", "--app-dir", str(tmp_path), "svc:app")
    with running_cli(*args) as (proc, output):
        port = shared_port(output)
        pid = started(output, 1, worker_pids)
        assert get_pid(port) == pid
        proc.kill()
        assert output.wait_for(f"the supervisor (pid {proc.pid}) is gone: stopping", TIMEOUT), output.seen
        assert output.wait_for(f"BYE {pid}", TIMEOUT), output.seen  # a graceful stop
        assert output.wait_for_end(TIMEOUT), output.seen


def test_workers_and_reload_cannot_be_combined(tmp_path: Path) -> None:
    write_module(tmp_path, "svc", HTTP_APP)
    result = run_cli("run", "--workers", "2", "--reload", "--app-dir", str(tmp_path), "svc:app")
    assert result.returncode == 2
    assert "--workers and --reload cannot be used together" in result.stderr


def test_workers_refuse_a_listener_that_binds_its_port_itself(tmp_path: Path) -> None:
    write_module(tmp_path, "own_port", """
        from tiny_listener import Listener


        class App(Listener):
            host = "127.0.0.1"
            port = 8000

            async def listen(self):
                await self.wait_for_shutdown()


        app = App()
    """)
    result = run_cli("run", "--workers", "2", "--app-dir", str(tmp_path), "own_port:app")
    assert result.returncode == 2
    assert "--workers cannot share the port of App: it binds it itself" in result.stderr
