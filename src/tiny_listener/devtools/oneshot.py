"""Run one event through an app without its ``listen()``, for ``tiny-listener trigger``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .._types import EventData
from ..listener import Listener
from ..testing.client import TestClient


def run_one_event(
    listener: Listener[Any],
    path: str,
    data: EventData | None = None,
    cid: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Run the startup hooks, the event ``path`` and the shutdown hooks on a new event loop;
    return the handler's result.

    Raises the handler's error, :class:`~tiny_listener.EventNotFound` if no route matches, or
    what a startup hook raised.
    """

    async def one_event() -> Any:
        async with TestClient(listener) as client:
            return await client.trigger(path, data=data, cid=cid, timeout=timeout)

    return asyncio.run(one_event())


def render_result(result: Any) -> str:
    """Return ``result`` as JSON if it is serialisable, else its ``repr``."""
    try:
        return json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(result)
