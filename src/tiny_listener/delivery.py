"""What a broker listener does with a message, decided without any network code.

Shared by the broker listeners: how a payload becomes event data, and what follows a failed
delivery (retry after a delay, or dead-letter once the retries are used up). The reasons a
message is dead-lettered are named here once, as they appear in dead-letter headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ._types import EventData
from .backoff import retry_delay
from .codecs import Codec

NO_ROUTE = "no-route"
"""Dead-letter reason: no route matches the message's event path."""

UNDECODABLE = "undecodable"
"""Dead-letter reason: the codec cannot decode the payload."""

HANDLER_FAILED = "handler-failed"
"""Dead-letter reason: the handler failed on every allowed attempt."""


def payload_to_data(payload: bytes, codec: Codec) -> EventData:
    """Decode ``payload`` into event data: a decoded mapping is the data itself, any other
    value (a list, a number, raw bytes) is carried as ``{"payload": value}``.

    Raises :class:`~tiny_listener.codecs.DecodeError` if the codec cannot decode it.
    """
    decoded = codec.decode(payload)
    if isinstance(decoded, dict):
        return decoded
    return {"payload": decoded}


def data_to_payload(data: object, codec: Codec) -> bytes:
    """Encode event data for publishing and return the bytes; the inverse of
    :func:`payload_to_data`, so ``{"payload": value}`` with a non-mapping ``value`` is sent as
    ``value`` itself. Raises what the codec raises for data it cannot encode."""
    if isinstance(data, dict) and data.keys() == {"payload"} and not isinstance(data["payload"], dict):
        data = data["payload"]
    return codec.encode(data)


@dataclass(frozen=True)
class Retry:
    """Deliver the message again after ``delay`` seconds, as attempt number ``attempt``."""

    attempt: int
    delay: float


@dataclass(frozen=True)
class DeadLetter:
    """Give up on the message and dead-letter it, saying ``reason``."""

    reason: str


def after_failure(
    attempts_made: int, max_retries: int, retry_backoff: float, max_retry_delay: float
) -> Union[Retry, DeadLetter]:
    """Decide what follows a handler failure on delivery number ``attempts_made`` (1 for the
    first): a :class:`Retry` while fewer than ``max_retries`` retries were made, with a delay
    growing from ``retry_backoff`` seconds up to ``max_retry_delay``; a :class:`DeadLetter`
    afterwards."""
    if attempts_made <= max_retries:
        return Retry(attempts_made + 1, retry_delay(attempts_made, initial=retry_backoff, maximum=max_retry_delay))
    return DeadLetter(HANDLER_FAILED)
