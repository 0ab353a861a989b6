"""A listener process for the fault and scale-out tests.

    python -m tests.nats._worker URL STREAM PREFIX ACK_WAIT MODE

It consumes ``PREFIX.job.{n:int}`` through the durable consumer ``workers`` and prints
``consuming`` once it does. MODE ``block``: prints ``started <n>`` and blocks in the handler
forever (to be killed). MODE ``work``: prints ``handled <n>`` for every message.
"""

from __future__ import annotations

import asyncio
import sys

from tests.worker_processes import announce_when_consuming
from tiny_listener import Param
from tiny_listener.nats import NATSListener

url, stream, prefix, ack_wait, mode = sys.argv[1:6]
app: NATSListener = NATSListener(  # type: ignore[type-arg]
    url, stream=stream, durable="workers", ack_wait=float(ack_wait), max_in_flight=8, retry_backoff=0.05
)


@app.on_event(prefix + ".job.{n:int}")
async def job(n: Param) -> None:
    if mode == "block":
        print(f"started {n}", flush=True)
        await asyncio.Event().wait()
    # A little work, so that the messages spread over the workers.
    await asyncio.sleep(0.002)
    print(f"handled {n}", flush=True)


announce_when_consuming(app)

if __name__ == "__main__":
    app.run()
