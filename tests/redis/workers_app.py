"""The worker app of the end-to-end test, run as ``tiny-listener tests.redis.workers_app:app``.

Every handled event adds one to its counter in the hash ``<stream>:handled``, so that the test
sees which events were handled and how many times. Settings come from the environment.
"""

from __future__ import annotations

import os
from typing import Any

from tiny_listener import Param
from tiny_listener.redis import RedisStreamListener

STREAM = os.environ.get("TL_E2E_STREAM", "e2e")

app: RedisStreamListener[Any] = RedisStreamListener(
    os.environ.get("TL_E2E_URL", "redis://127.0.0.1:6379/0"),
    streams=[STREAM],
    group=os.environ.get("TL_E2E_GROUP", "e2e"),
    max_in_flight=int(os.environ.get("TL_E2E_MAX_IN_FLIGHT", "50")),
    claim_idle=float(os.environ.get("TL_E2E_CLAIM_IDLE", "1.0")),
)


@app.on_event("item:{n:int}")
async def count_item(n: Param) -> None:
    await app.redis.hincrby(f"{STREAM}:handled", str(n), 1)
