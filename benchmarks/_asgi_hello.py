"""Minimal ASGI app for bench_http.py: the example's routes (/user/{name} and everything else)."""

from __future__ import annotations

from typing import Any, Callable

TEXT = b"text/plain; charset=utf-8"


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = f"Hello, {path[6:]}!".encode() if path.startswith("/user/") else b"Welcome!"
    headers = [(b"content-type", TEXT), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
