"""The stream message format, without any I/O.

An event is a stream entry with two fields: ``path`` (UTF-8 text) and ``data`` (the event data
encoded by the codec; no ``data`` field means empty data). A dead letter is the original
entry's fields plus the fields the other broker listeners use as dead-letter headers:
``x-dead-letter-reason`` (a code of :mod:`tiny_listener.delivery`), ``x-last-error``,
``x-attempt``, ``x-original-stream`` and ``x-original-id``, and who dead-lettered it when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple, Union

from .._types import EventData
from ..codecs import Codec, DecodeError
from ..delivery import (
    ATTEMPT,
    DEAD_LETTER_REASON,
    LAST_ERROR,
    MAX_ERROR_TEXT,
    UNDECODABLE,
    UndeliverableMessage,
    data_to_payload,
    payload_to_data,
)

PATH_FIELD = b"path"
DATA_FIELD = b"data"

# The first three as the other broker listeners name their dead-letter headers.
REASON_FIELD = DEAD_LETTER_REASON.encode()
ERROR_FIELD = LAST_ERROR.encode()
ATTEMPT_FIELD = ATTEMPT.encode()
STREAM_FIELD = b"x-original-stream"
ID_FIELD = b"x-original-id"
GROUP_FIELD = b"x-dead-letter-group"
CONSUMER_FIELD = b"x-dead-letter-consumer"
TIME_FIELD = b"x-dead-lettered-at"
DEAD_LETTER_FIELDS = frozenset(
    (REASON_FIELD, ERROR_FIELD, ATTEMPT_FIELD, STREAM_FIELD, ID_FIELD, GROUP_FIELD, CONSUMER_FIELD, TIME_FIELD)
)

REDELIVERED_TOO_OFTEN = "redelivered-too-often"
"""Dead-letter reason: consumers kept stopping or dying while handling the message."""

Fields = Dict[bytes, bytes]
EntryFields = List[bytes]
"""A stream entry's fields as Redis sends them: name, value, name, value..."""
FieldValue = Union[bytes, str, int, float]


def encode_event(path: str, data: Any, codec: Codec) -> Fields:
    """Return the fields of the stream entry for event ``path`` carrying ``data`` (no ``data``
    field when it is None: the event then carries empty data)."""
    if data is None:
        return {PATH_FIELD: path.encode()}
    return {PATH_FIELD: path.encode(), DATA_FIELD: data_to_payload(data, codec)}


def fields_of(entry: EntryFields) -> Fields:
    """The fields of a stream entry as sent (name, value, ...), by name; of a name given
    twice, the last value (as redis-py's own parsing keeps)."""
    return dict(zip(entry[::2], entry[1::2]))


def decode_event(fields: Mapping[bytes, bytes], codec: Codec) -> Tuple[str, EventData]:
    """Return ``(path, data)`` of a stream entry; data that is not a mapping arrives as
    ``{"payload": value}``.

    Raises :class:`UndeliverableMessage` when the entry has no ``path``, a path that is not
    UTF-8, or a ``data`` field the codec cannot decode.
    """
    raw_path = fields.get(PATH_FIELD)
    if raw_path is None:
        raise UndeliverableMessage(UNDECODABLE, "message has no 'path' field")
    try:
        path = raw_path.decode()
    except UnicodeDecodeError:
        raise UndeliverableMessage(UNDECODABLE, f"message path is not UTF-8: {raw_path[:80]!r}") from None
    payload = fields.get(DATA_FIELD)
    if payload is None:
        return path, {}
    return path, decode_data(path, payload, codec)


def decode_data(path: str, payload: bytes, codec: Codec) -> EventData:
    """Return the event data of the ``data`` field of event ``path``; raises
    :class:`UndeliverableMessage` if the codec cannot decode it."""
    try:
        return payload_to_data(payload, codec)
    except DecodeError as exc:
        raise UndeliverableMessage(UNDECODABLE, f"data of event {path!r} cannot be decoded: {exc}") from None


def dead_letter_fields(
    original: Mapping[bytes, bytes],
    *,
    reason: str,
    error: str,
    stream: str,
    message_id: bytes,
    group: str,
    consumer: str,
    attempts: int,
) -> Dict[bytes, FieldValue]:
    """Return the fields of the dead letter of ``original``: its fields, then why and whence."""
    fields: Dict[bytes, FieldValue] = dict(original)
    fields[REASON_FIELD] = reason
    fields[ERROR_FIELD] = error if len(error) <= MAX_ERROR_TEXT else error[: MAX_ERROR_TEXT - 3] + "..."
    fields[ATTEMPT_FIELD] = attempts
    fields[STREAM_FIELD] = stream
    fields[ID_FIELD] = message_id
    fields[GROUP_FIELD] = group
    fields[CONSUMER_FIELD] = consumer
    fields[TIME_FIELD] = f"{time.time():.3f}"
    return fields


@dataclass(frozen=True)
class DeadLetter:
    """One entry of a dead-letter stream, read back.

    ``id`` is its id in the dead-letter stream; ``original`` the fields of the message as it
    was published (what a replay publishes again); ``reason`` a code (``no-route``,
    ``undecodable``, ``handler-failed``, ``redelivered-too-often``) and ``error`` the details;
    ``stream``/``source_id`` where it was read from; ``attempts`` how many times it was tried.
    """

    id: bytes
    original: Fields
    reason: str
    error: str
    stream: str
    source_id: bytes
    attempts: int

    @property
    def path(self) -> str | None:
        """The event path of the original message, if it had one."""
        raw = self.original.get(PATH_FIELD)
        return raw.decode(errors="replace") if raw is not None else None

    @classmethod
    def from_entry(cls, entry_id: bytes, fields: Mapping[bytes, bytes]) -> DeadLetter:
        """Parse a dead-letter stream entry; fields it lacks read as empty."""
        attempts = fields.get(ATTEMPT_FIELD, b"0")
        return cls(
            id=entry_id,
            original={key: value for key, value in fields.items() if key not in DEAD_LETTER_FIELDS},
            reason=fields.get(REASON_FIELD, b"").decode(errors="replace"),
            error=fields.get(ERROR_FIELD, b"").decode(errors="replace"),
            stream=fields.get(STREAM_FIELD, b"").decode(errors="replace"),
            source_id=fields.get(ID_FIELD, b""),
            attempts=int(attempts) if attempts.isdigit() else 0,
        )
