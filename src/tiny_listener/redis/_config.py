"""Redis Streams defaults and ``order_by``, without any I/O.

The settings themselves are the attributes of :class:`~tiny_listener.redis.RedisStreamSource`,
checked once when it is made (the delivery settings by the flow, the Redis ones there).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Hashable, Union

from .._types import EventData, PathParams

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GROUP = "tiny-listener"
DEFAULT_DEAD_LETTER = "{stream}:dead"

OrderKey = Callable[[str, Any], Union[Hashable, None]]
"""``order_by`` as a function: ``(event path, event data) -> key``; ``None`` means no ordering."""

OrderKeyOf = Callable[[str, PathParams, EventData], Union[Hashable, None]]
"""``order_by`` compiled: ``(event path, path params, event data) -> key or None``."""


def default_consumer_name() -> str:
    """Return ``"<hostname>-<pid>"``: unique per process, readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def order_key_function(order_by: Union[str, OrderKey, None]) -> OrderKeyOf | None:
    """Turn ``order_by`` (a path parameter or data key name, or an :data:`OrderKey` function)
    into ``(path, params, data) -> hashable key or None``; None for no ordering. An
    unhashable key is keyed by its ``repr``."""
    if order_by is None:
        return None
    if callable(order_by):
        by_function = order_by

        def from_function(path: str, params: PathParams, data: EventData) -> Hashable | None:
            return _hashable(by_function(path, data))

        return from_function
    name = order_by

    def from_name(path: str, params: PathParams, data: EventData) -> Hashable | None:
        if name in params:
            return _hashable(params[name])
        return _hashable(data.get(name))

    return from_name


def _hashable(key: Any) -> Hashable | None:
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key  # type: ignore[no-any-return]
