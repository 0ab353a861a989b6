"""AMQP message headers the listener reads and writes (the names every broker listener shares
live in :mod:`tiny_listener.delivery`).

A message's event path is its ``x-event-path`` header, or else its routing key (so that
messages published to a topic exchange by any client work). ``x-attempt`` counts deliveries
that failed before, and goes up by one on every retry. Dead-lettered messages say why.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from ..delivery import ATTEMPT as ATTEMPT
from ..delivery import DEAD_LETTER_REASON as DEAD_LETTER_REASON
from ..delivery import EVENT_PATH as EVENT_PATH
from ..delivery import LAST_ERROR as LAST_ERROR
from ..delivery import error_text

ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"


def event_path(headers: Mapping[str, Any] | None, routing_key: str | None) -> str:
    """Return the event path of a message: its ``x-event-path`` header, else its routing key."""
    if headers:
        path = headers.get(EVENT_PATH)
        if isinstance(path, bytes):
            return path.decode("utf-8", "replace")
        if isinstance(path, str):
            return path
    return routing_key or ""


def attempt(headers: Mapping[str, Any] | None) -> int:
    """Return the delivery attempt of a message, 1 for the first (no or bad header)."""
    value = (headers or {}).get(ATTEMPT)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def retry_headers(
    headers: Mapping[str, Any] | None,
    path: str,
    next_attempt: int,
    error: BaseException,
    exchange: str | None,
    routing_key: str | None,
) -> Dict[str, Any]:
    """Return the headers of the copy of a failed message sent to wait for its retry: the
    event path travels in a header because the copy comes back with another routing key."""
    return {**_moved(headers, path, error, exchange, routing_key), ATTEMPT: next_attempt}


def dead_letter_headers(
    headers: Mapping[str, Any] | None,
    path: str,
    reason: str,
    error: BaseException,
    exchange: str | None,
    routing_key: str | None,
) -> Dict[str, Any]:
    """Return the headers of a dead-lettered message: the original ones, plus its event path,
    why it was dead-lettered, the error and where it was first published."""
    return {**_moved(headers, path, error, exchange, routing_key), DEAD_LETTER_REASON: reason}


def _moved(
    headers: Mapping[str, Any] | None, path: str, error: BaseException, exchange: str | None, routing_key: str | None
) -> Dict[str, Any]:
    """Return the headers every copy the listener makes of a message carries: the original
    ones, its event path, the last error, and where it was first published (kept from an
    earlier copy, since a retried copy comes back through the default exchange)."""
    original = headers or {}
    return {
        **original,
        EVENT_PATH: path,
        LAST_ERROR: error_text(error),
        ORIGINAL_EXCHANGE: original.get(ORIGINAL_EXCHANGE, exchange or ""),
        ORIGINAL_ROUTING_KEY: original.get(ORIGINAL_ROUTING_KEY, routing_key or ""),
    }
