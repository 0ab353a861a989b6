"""A listener process that the fault tests kill in the middle of an event.

    python -m tests.amqp._worker QUEUE

It prints ``consuming`` once it consumes the queue and ``started <path>`` when a handler
starts, then blocks in it forever.
"""

from __future__ import annotations

import sys

from tests.worker_processes import announce_when_consuming, block_forever
from tiny_listener.amqp import AMQPListener

app: AMQPListener = AMQPListener(queue=sys.argv[1], retry_backoff=0.05)  # type: ignore[type-arg]
app.on_event("{path:path}")(block_forever)
announce_when_consuming(app)

if __name__ == "__main__":
    app.run()
