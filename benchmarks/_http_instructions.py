"""Instructions per HTTP request of one server, counted by callgrind (machine load does not
change them, unlike bench_http.py's requests/s).

The server runs under ``valgrind --tool=callgrind`` with instrumentation off; after a warm-up
it is switched on, a client sends ``--requests`` keep-alive ``GET /user/bob`` over
``--connections`` connections (one request in flight on each, as wrk does), then it is
switched off and the count is divided by the requests. The client is plain sockets in this
process; the server under callgrind is far slower than it, so its batches look like wrk's.

    python benchmarks/_http_instructions.py tiny_listener_httptools
    python benchmarks/_http_instructions.py uvicorn_httptools --requests 5000

Server names are bench_http.py's. ``PYTHONHASHSEED=0`` keeps the counts repeatable.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import socket
import subprocess
import tempfile
from pathlib import Path

from bench_http import PATH, ROOT, free_port, server_commands, wait_until_answering

REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def drive(port: int, requests: int, connections: int) -> None:
    """Send ``requests`` requests over ``connections`` connections, one in flight on each."""
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ, bytearray())
        socks.append(sock)
    sent = done = 0
    for sock in socks:
        if sent < requests:
            sock.sendall(REQUEST)
            sent += 1
    while done < requests:
        for key, _ in selector.select():
            sock = key.fileobj  # type: ignore[assignment]
            buffer = key.data
            data = sock.recv(65536)  # type: ignore[attr-defined]
            if not data:
                raise RuntimeError("the server closed a connection")
            buffer += data
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                match = re.search(rb"(?i)content-length:\s*(\d+)", buffer[:end])
                length = int(match.group(1)) if match else 0
                if len(buffer) < end + 4 + length:
                    break
                del buffer[: end + 4 + length]
                done += 1
                if sent < requests:
                    sock.sendall(REQUEST)  # type: ignore[attr-defined]
                    sent += 1
    for sock in socks:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", help="a server name of bench_http.py (tiny_listener, uvicorn_httptools...)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--keep", help="keep the callgrind output in this file (for callgrind_annotate)")
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONHASHSEED": "0"}
        cmd = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            *server_commands(port)[args.server],
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            wait_until_answering(port, proc, timeout=120)
            drive(port, min(500, args.requests), args.connections)  # warm-up
            subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True)
            drive(port, args.requests, args.connections)
            subprocess.run(["callgrind_control", "--instr=off", str(proc.pid)], check=True, capture_output=True)
        finally:
            proc.terminate()
            proc.wait(60)
        totals = 0
        for dump in Path(tmp).glob("callgrind.out*"):
            match = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M)
            if match:
                totals += int(match.group(1))
            if args.keep:
                Path(args.keep).write_bytes(dump.read_bytes())
    print(f"{args.server}: {totals / args.requests:,.0f} instructions per request ({args.requests} requests)")


if __name__ == "__main__":
    main()
