"""The worker app of the Kafka end-to-end tests, run as ``tiny-listener tests.kafka.workers_app:app``.

Every handled event appends one line ``n key started_ns finished_ns`` to this worker's file in
``TL_KAFKA_OUT`` (written with O_APPEND straight to the kernel, so a SIGKILL loses nothing
written), so that the test sees which events were handled, how often, and in which order.
Events whose ``n`` is in ``TL_KAFKA_POISON`` always fail. Settings come from the environment.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from tiny_listener import Data, Event
from tiny_listener.kafka import KafkaListener

TOPIC = os.environ.get("TL_KAFKA_TOPIC", "e2e")
POISON = {int(n) for n in os.environ.get("TL_KAFKA_POISON", "").split(",") if n}
WORK_SECONDS = float(os.environ.get("TL_KAFKA_WORK", "0.002"))

app: KafkaListener[Any] = KafkaListener(
    os.environ.get("TL_KAFKA_URL", "kafka://127.0.0.1:9092"),
    group=os.environ.get("TL_KAFKA_GROUP", "e2e"),
    max_retries=1,
    retry_backoff=0.01,
    commit_interval=0.5,
    revoke_timeout=5.0,
    consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
)

_out = os.open(Path(os.environ.get("TL_KAFKA_OUT", "."), f"worker-{os.getpid()}.txt"),
               os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


@app.on_event(TOPIC)
async def handle(event: Event[Any], n: Data) -> None:
    if n in POISON:
        raise ValueError(f"poison event {n}")
    started = time.monotonic_ns()
    await asyncio.sleep(WORK_SECONDS)
    key = event.ctx.scope["message"].key.decode()
    os.write(_out, f"{n} {key} {started} {time.monotonic_ns()}\n".encode())
