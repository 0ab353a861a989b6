"""A listener process that the fault tests kill in the middle of an event.

    python -m tests.amqp._worker QUEUE

It prints ``consuming`` once it consumes the queue and ``started <path>`` when a handler
starts, then blocks in it forever.
"""

from __future__ import annotations

import asyncio
import sys

from tiny_listener import Event
from tiny_listener.amqp import AMQPListener

app: AMQPListener = AMQPListener(queue=sys.argv[1], retry_backoff=0.05)  # type: ignore[type-arg]


@app.on_event("{path:path}")
async def block_forever(event: Event) -> None:  # type: ignore[type-arg]
    print(f"started {event.path}", flush=True)
    await asyncio.Event().wait()


@app.startup
async def announce_when_consuming() -> None:
    async def announce() -> None:
        await app.wait_connected()
        print("consuming", flush=True)

    app.spawn(announce())


if __name__ == "__main__":
    app.run()
