"""The servers ``bench_attacks.py`` attacks, each run by the ``tiny-listener`` command.

- ``tcp_app``: every line is answered with 60 KB (``ctx.send``, without waiting), except
  ``ping``, answered ``pong``, and ``store <anything>``, answered ``stored``;
- ``http_app``: ``POST /upload`` reads the whole body, ``GET /ping`` answers ``pong``, and any
  other ``GET`` path ``ok``.
"""

from __future__ import annotations

from tiny_listener.http import HTTPListener, Request
from tiny_listener.tcp import TCPContext, TCPListener

REPLY = b"r" * 60_000

tcp_app = TCPListener(host="127.0.0.1", port=0)


@tcp_app.on_event("ping")
async def ping(ctx: TCPContext) -> None:
    ctx.send("pong")


@tcp_app.on_event("store {rest:path}")
async def store(ctx: TCPContext) -> None:
    ctx.send("stored")


@tcp_app.on_event()
async def big_reply(ctx: TCPContext) -> None:
    ctx.send(REPLY)


http_app = HTTPListener(host="127.0.0.1", port=0)


@http_app.on_event("POST:/upload")
async def upload(request: Request) -> str:
    return str(len(await request.body()))


@http_app.on_event("GET:/ping")
async def http_ping() -> str:
    return "pong"


@http_app.on_event("GET:/{anything:path}")
async def anything() -> str:
    return "ok"
