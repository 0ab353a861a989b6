"""HTTP throughput, tail latency and memory: the built-in listener serving
``examples/http_app.py`` (with its default h11 parser, and with ``parser="httptools"``)
against uvicorn (``--http h11`` and ``--http httptools``) serving a minimal ASGI app with the
same route, in the same run, on loopback.

Load: ``wrk`` (where installed) or a small asyncio client, 50 keep-alive connections on
``GET /user/bob``. Each server gets a short warm-up, then RSS is read, the load runs for
``--duration`` seconds, and RSS is read again. Servers run with ``--log-level warning`` (no
access log line per request) so that terminal output is not what is measured.

    python benchmarks/bench_http.py               # 60 s per server
    python benchmarks/bench_http.py --duration 10 # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from _harness import eprint, report

ROOT = Path(__file__).resolve().parent.parent
PATH = "/user/bob"
EXPECTED = b"Hello, bob!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_commands(port: int) -> Dict[str, List[str]]:
    py = sys.executable
    common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    uvicorn = [py, "-m", "uvicorn", "--app-dir", str(ROOT / "benchmarks"), *common, "--no-access-log"]
    return {
        "tiny_listener": [py, "-m", "tiny_listener", "--app-dir", str(ROOT / "examples"), *common, "http_app:app"],
        "tiny_listener_httptools": [
            py, "-m", "tiny_listener", "--app-dir", str(ROOT / "benchmarks"), *common, "_http_app_httptools:app"
        ],
        "uvicorn_h11": [*uvicorn, "--http", "h11", "_asgi_hello:app"],
        "uvicorn_httptools": [*uvicorn, "--http", "httptools", "_asgi_hello:app"],
    }


def wait_until_answering(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if EXPECTED in sock.recv(4096):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer in time")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- load generators


def run_wrk(port: int, duration: float, connections: int) -> Dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "--latency", f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99_ms = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        eprint(out)
    return {"requests_per_s": rps, "p99_ms": p99_ms, "errors": float(bool(errors or socket_errors))}


async def _client(port: int, stop_at: float, latencies: List[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def run_asyncio_client(port: int, duration: float, connections: int) -> Dict[str, float]:
    latencies: List[float] = []

    async def main() -> None:
        stop_at = time.perf_counter() + duration
        await asyncio.gather(*(_client(port, stop_at, latencies) for _ in range(connections)))

    asyncio.run(main())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return {"requests_per_s": len(latencies) / duration, "p99_ms": p99 * 1e3, "errors": 0.0}


# ---------------------------------------------------------------- one server


def measure(name: str, cmd: List[str], port: int, duration: float, connections: int, load: Any) -> Dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until_answering(port, proc)
        load(port, min(3.0, duration), connections)  # warm-up: caches, allocator, JIT-free but lazy imports
        rss_before = rss_mb(proc.pid)
        figures = load(port, duration, connections)
        figures["rss_growth_mb"] = rss_mb(proc.pid) - rss_before
        figures["rss_end_mb"] = rss_mb(proc.pid)
        eprint(f"{name}: {figures}")
        return figures
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per server (default 60)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--client", choices=("auto", "wrk", "asyncio"), default="auto")
    args = parser.parse_args()

    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    load = run_wrk if use_wrk else run_asyncio_client
    probe = subprocess.run([sys.executable, "-c", "import uvicorn, httptools"], capture_output=True)
    if probe.returncode != 0:
        sys.exit("uvicorn and httptools are needed for the baseline: pip install -e '.[bench]'")

    results: Dict[str, Dict[str, float]] = {}
    for name in ("tiny_listener", "uvicorn_h11", "tiny_listener_httptools", "uvicorn_httptools"):
        port = free_port()
        results[name] = measure(name, server_commands(port)[name], port, args.duration, args.connections, load)

    ours, h11_base, fast_base = results["tiny_listener"], results["uvicorn_h11"], results["uvicorn_httptools"]
    figures: Dict[str, Any] = {"load_generator": "wrk" if use_wrk else "asyncio", "duration_s": args.duration,
                               "connections": args.connections}
    for name, res in results.items():
        figures[f"{name}_requests_per_s"] = res["requests_per_s"]
        figures[f"{name}_p99_ms"] = res["p99_ms"]
        figures[f"{name}_rss_growth_mb"] = res["rss_growth_mb"]
    figures["ratio_vs_uvicorn_h11"] = ours["requests_per_s"] / h11_base["requests_per_s"]
    figures["ratio_vs_uvicorn_httptools"] = ours["requests_per_s"] / fast_base["requests_per_s"]
    figures["ratio_httptools_parser_vs_uvicorn_httptools"] = (
        results["tiny_listener_httptools"]["requests_per_s"] / fast_base["requests_per_s"]
    )
    figures["goal_ratio_vs_uvicorn_h11_at_least"] = 1.2
    figures["goal_p99_ms_under"] = 20.0
    figures["goal_rss_growth_mb_under"] = 10.0
    figures["errors"] = sum(res["errors"] for res in results.values())
    report("http", figures)


if __name__ == "__main__":
    main()
