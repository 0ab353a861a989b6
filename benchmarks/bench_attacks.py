"""Hostile clients against the built-in servers: the server's memory under each attack, and the
latency of a normal client served meanwhile (issue 14, items 1, 2 and 6).

Each server runs in its own process (the ``tiny-listener`` command, ``--log-level warning``),
on 127.0.0.1 only; the attackers and the normal client run here. RSS is the server's
``VmRSS``, sampled every 0.25 s: "peak" is its highest growth over the baseline (read after a
warm-up) during the attack, "after" its growth once the attackers have left.

1. ``tcp_no_read`` / ``tcp_chat_no_read``: 20 clients send requests as fast as the server
   takes them and never read the answers (60 KB each with ``benchmarks/_attack_apps.py``; the
   chat bot's short lines with ``examples/tcp_chat.py``), for ``--duration`` seconds, while a
   normal client pings every 20 ms.
2. ``http_slow_body_<parser>``: ``--attackers`` (500) clients each declare a 1 MB body and send
   one byte a second; when the server cuts one off it reconnects and starts again. A normal
   client sends ``GET /ping`` every 20 ms. Also reported: how long the server took to cut an
   attacker off.
6. ``tcp_history``: 40 connections each send 130 distinct lines of 60 KB (5,200 distinct event
   paths: the route cache and each connection's event history), read the answers, and leave;
   twice more on the same server (``tcp_history_round2``, ``_round3``: what the allocator
   kept after the first is reused, not added to);
   ``http_long_paths_<parser>``: 4,095 distinct 15 KB request paths on one connection.

Goals: RSS growth under 20 MB during each attack and back to the baseline after; p99 latency
of the normal client under 50 ms with 500 slow-body attackers.

    python benchmarks/bench_attacks.py                  # 60 s per timed attack, ~6 minutes
    python benchmarks/bench_attacks.py --duration 20    # a quicker run
    python benchmarks/bench_attacks.py --only http_slow_body
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Tuple

from _harness import eprint, report

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GOAL_RSS_MB = 20.0
GOAL_P99_MS = 50.0
PROBE_INTERVAL = 0.02
SETTLE = 3.0  # seconds given to the server to release what the attackers cost


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """A ``tiny-listener`` process on a free loopback port; its stderr goes to a file."""

    def __init__(self, app_dir: Path, app: str, *options: str) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tiny_listener", "--app-dir", str(app_dir), "--host", HOST,
             "--port", str(self.port), "--log-level", "warning", *options, app],
            stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{app} did not start") from None
                time.sleep(0.1)

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> int:
        """Stop the server; return how many lines it logged."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").splitlines()
        self.log.close()
        for line in lines[:5]:
            eprint(f"  server: {line}")
        return len(lines)


@contextlib.asynccontextmanager
async def watching_rss(server: Server, figures: Dict[str, Any], name: str) -> AsyncIterator[None]:
    """Sample the server's RSS while the block runs; record its peak growth over ``baseline``."""
    baseline = server.rss()
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 0.25)

    sampler = asyncio.create_task(sample())
    try:
        yield
    finally:
        done.set()
        await sampler
    await asyncio.sleep(SETTLE)
    figures[f"{name}_rss_baseline_mb"] = round(baseline, 1)
    figures[f"{name}_rss_growth_peak_mb"] = round(peak - baseline, 2)
    figures[f"{name}_rss_growth_after_mb"] = round(server.rss() - baseline, 2)


async def probe(
    ask: Callable[[], Awaitable[None]], stop: asyncio.Event, latencies: List[float], errors: List[str]
) -> None:
    """Ask once every PROBE_INTERVAL seconds until ``stop``; record each answer's latency."""
    while not stop.is_set():
        start = time.perf_counter()
        try:
            await asyncio.wait_for(ask(), 10)
            latencies.append(time.perf_counter() - start)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, PROBE_INTERVAL - (time.perf_counter() - start)))


def latency_figures(figures: Dict[str, Any], name: str, latencies: List[float], errors: List[str]) -> None:
    ordered = sorted(latencies) or [float("nan")]
    figures[f"{name}_probe_requests"] = len(latencies)
    figures[f"{name}_probe_p50_ms"] = round(statistics.median(ordered) * 1e3, 2)
    figures[f"{name}_probe_p99_ms"] = round(ordered[int(len(ordered) * 0.99)] * 1e3, 2)
    figures[f"{name}_probe_max_ms"] = round(ordered[-1] * 1e3, 2)
    figures[f"{name}_probe_errors"] = len(errors)
    if errors:
        eprint(f"{name}: probe errors, first: {errors[0]}")


# ---------------------------------------------------------------- 1. clients that never read


async def tcp_no_read(
    name: str, app_dir: Path, app: str, line: bytes, probe_line: bytes, duration: float
) -> Dict[str, Any]:
    figures: Dict[str, Any] = {}
    server = Server(app_dir, app)
    try:
        reader, writer = await asyncio.open_connection(HOST, server.port)

        async def ask() -> None:
            writer.write(probe_line + b"\n")
            await reader.readline()

        for _ in range(20):
            await ask()
        stop = asyncio.Event()
        sent = [0]

        async def attacker() -> None:
            _, attack_writer = await asyncio.open_connection(HOST, server.port)
            burst = line * 1000
            try:
                while not stop.is_set():
                    # Never read; write whenever the socket takes more (our side stays bounded).
                    if attack_writer.transport.get_write_buffer_size() < 64 * 1024:
                        attack_writer.write(burst)
                        sent[0] += len(burst)
                        await asyncio.sleep(0)
                    else:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.05)
            finally:
                attack_writer.transport.abort()

        latencies: List[float] = []
        errors: List[str] = []
        async with watching_rss(server, figures, name):
            attackers = [asyncio.create_task(attacker()) for _ in range(20)]
            probing = asyncio.create_task(probe(ask, stop, latencies, errors))
            await asyncio.sleep(duration)
            stop.set()
            await asyncio.gather(*attackers, probing)
        latency_figures(figures, name, latencies, errors)
        figures[f"{name}_attack_mb_sent"] = round(sent[0] / 1e6, 1)
        writer.close()
    finally:
        figures[f"{name}_server_log_lines"] = server.stop()
    return figures


# ---------------------------------------------------------------- 2. slow request bodies


async def http_slow_body(parser: str, attackers: int, duration: float) -> Dict[str, Any]:
    name = f"http_slow_body_{parser}"
    figures: Dict[str, Any] = {}
    server = Server(ROOT / "benchmarks", "_attack_apps:http_app", "--http", parser)
    try:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"

        async def ask() -> None:
            writer.write(ping)
            await reader.readuntil(b"pong")

        for _ in range(20):
            await ask()
        stop = asyncio.Event()
        cut_after: List[float] = []
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"

        async def attacker(delay: float) -> None:
            await asyncio.sleep(delay)  # connect in a stream, not in one burst
            while not stop.is_set():
                attack_reader, attack_writer = await asyncio.open_connection(HOST, server.port)
                started = time.monotonic()
                attack_writer.write(head)
                try:
                    while not stop.is_set():
                        try:
                            answer = await asyncio.wait_for(attack_reader.read(4096), 1.0)
                        except asyncio.TimeoutError:
                            attack_writer.write(b"x")  # one byte a second
                            continue
                        if answer or attack_reader.at_eof():
                            cut_after.append(time.monotonic() - started)
                            break
                except OSError:
                    cut_after.append(time.monotonic() - started)
                finally:
                    attack_writer.transport.abort()

        latencies: List[float] = []
        errors: List[str] = []
        async with watching_rss(server, figures, name):
            tasks = [asyncio.create_task(attacker(2.0 * i / attackers)) for i in range(attackers)]
            probing = asyncio.create_task(probe(ask, stop, latencies, errors))
            await asyncio.sleep(duration)
            stop.set()
            await asyncio.gather(*tasks, probing)
        latency_figures(figures, name, latencies, errors)
        figures[f"{name}_attackers"] = attackers
        figures[f"{name}_attackers_cut_off"] = len(cut_after)
        if cut_after:
            figures[f"{name}_cut_off_after_s_median"] = round(statistics.median(cut_after), 1)
            figures[f"{name}_cut_off_after_s_max"] = round(max(cut_after), 1)
        writer.close()
    finally:
        figures[f"{name}_server_log_lines"] = server.stop()
    return figures


# ---------------------------------------------------------------- 6. memory per connection and path


async def tcp_history() -> Dict[str, Any]:
    """The same attack three times on one server: what the allocator keeps after the first is
    reused by the next ones, not added to."""
    figures: Dict[str, Any] = {}
    server = Server(ROOT / "benchmarks", "_attack_apps:tcp_app")
    filler = b"x" * 60_000

    async def client(round_number: int, number: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        for i in range(130):
            writer.write(b"store %d-%d-%d:%s\n" % (round_number, number, i, filler))
            await writer.drain()
        for _ in range(130):
            assert await reader.readline() == b"stored\n"
        writer.close()
        await writer.wait_closed()

    try:
        baseline = server.rss()
        for round_number in (1, 2, 3):
            name = "tcp_history" if round_number == 1 else f"tcp_history_round{round_number}"
            async with watching_rss(server, figures, name):
                await asyncio.gather(*(client(round_number, n) for n in range(40)))
            figures[f"{name}_rss_growth_since_first_baseline_mb"] = round(server.rss() - baseline, 2)
    finally:
        figures["tcp_history_server_log_lines"] = server.stop()
    return figures


async def http_long_paths(parser: str) -> Dict[str, Any]:
    name = f"http_long_paths_{parser}"
    figures: Dict[str, Any] = {}
    server = Server(ROOT / "benchmarks", "_attack_apps:http_app", "--http", parser)
    filler = "p" * 15_000
    try:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        async with watching_rss(server, figures, name):
            for i in range(4095):
                writer.write(f"GET /{i}/{filler} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await reader.readuntil(b"ok")
        writer.close()
    finally:
        figures[f"{name}_server_log_lines"] = server.stop()
    return figures


# ---------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per timed attack (default 60)")
    parser.add_argument("--attackers", type=int, default=500, help="slow-body attackers (default 500)")
    parser.add_argument("--only", default="", help="run only the attacks whose name starts with this")
    args = parser.parse_args()

    attacks: List[Tuple[str, Callable[[], Awaitable[Dict[str, Any]]]]] = [
        ("tcp_no_read", lambda: tcp_no_read(
            "tcp_no_read", ROOT / "benchmarks", "_attack_apps:tcp_app", b"give\n", b"ping", args.duration)),
        ("tcp_chat_no_read", lambda: tcp_no_read(
            "tcp_chat_no_read", ROOT / "examples", "tcp_chat:app", b"hello!\n", b"who are you?", args.duration)),
        ("http_slow_body_h11", lambda: http_slow_body("h11", args.attackers, args.duration)),
        ("http_slow_body_httptools", lambda: http_slow_body("httptools", args.attackers, args.duration)),
        ("tcp_history", tcp_history),
        ("http_long_paths_h11", lambda: http_long_paths("h11")),
        ("http_long_paths_httptools", lambda: http_long_paths("httptools")),
    ]  # fmt: skip
    figures: Dict[str, Any] = {"duration_s": args.duration}
    for name, attack in attacks:
        if not name.startswith(args.only):
            continue
        eprint(f"{name}...")
        started = time.monotonic()
        figures.update(asyncio.run(attack()))
        eprint(f"{name}: done in {time.monotonic() - started:.0f}s")
    growths = [value for key, value in figures.items() if key.endswith(("_rss_growth_peak_mb", "_rss_growth_after_mb"))]
    figures["worst_rss_growth_mb"] = max(growths) if growths else float("nan")
    figures["goal_rss_growth_mb_under"] = GOAL_RSS_MB
    figures["goal_probe_p99_ms_under_with_slow_bodies"] = GOAL_P99_MS
    report("attacks", figures)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
